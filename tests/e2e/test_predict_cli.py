"""`fmnist predict` against a real model server on 127.0.0.1 (the sample pipeline's pushed model):
folders and globs, CSV rows, chunking under the server's size limits, gRPC and REST, per-file
errors, the output formats, and the one-line exit-2 messages for a server that cannot be used.

The command runs in this process (`pipeline.cli.main`), the server in threads of it; one
subprocess run of the real command is in tests/e2e/test_serving_client.py."""
import argparse
import csv
import gzip
import io
import json
import shutil
import struct
import zlib

import pytest
from PIL import Image

from benchmarks.photo_generator import generate
from conftest import SAMPLE_TEST_CSV
from pipeline.cli import run_command
from pipeline.clients.predict import add_arguments
from pipeline.clients.serving_cli import cmd_predict
from serving.model_manager import ModelConfig
from serving.ports import free_port
from serving.server import ModelServer


@pytest.fixture(scope="module")
def model_base(sample_run, tmp_path_factory):
    base = tmp_path_factory.mktemp("predict-serving") / "fmnist"
    shutil.copytree(sample_run[1].pushed_to, base / "4")
    return base


@pytest.fixture(scope="module")
def server(model_base):
    srv = ModelServer([ModelConfig("fmnist", str(model_base))], port=0, rest_port=0)
    srv.start()
    yield srv
    srv.stop(grace=2)


@pytest.fixture(scope="module")
def small_limits_server(model_base):
    """A server whose gRPC messages and REST bodies hold fewer than 100 images."""
    srv = ModelServer([ModelConfig("fmnist", str(model_base))], port=0, rest_port=0,
                      max_message_bytes=64 * 1024, max_body_bytes=256 * 1024)
    srv.start()
    yield srv
    srv.stop(grace=2)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """12 generated product photos in a folder with a sub-folder, a text file and a hidden file."""
    root = tmp_path_factory.mktemp("photos")
    generate(SAMPLE_TEST_CSV, root / "shop", 12, seed=3)
    (root / "shop" / "manifest.csv").unlink()
    sub = root / "shop" / "more"
    sub.mkdir()
    first = sorted((root / "shop").glob("photo_*"))[0]
    shutil.copy(first, sub / ("copy" + first.suffix))
    (root / "shop" / "README.txt").write_text("not a photo, not picked from a folder\n")
    (root / "shop" / ".hidden.png").write_bytes(b"")
    return root / "shop"


@pytest.fixture(scope="module")
def bom_csv(tmp_path_factory):
    """The first 150 sample test rows as an uncompressed CSV with a UTF-8 byte-order mark (as Excel saves)."""
    path = tmp_path_factory.mktemp("csv") / "rows.csv"
    with gzip.open(SAMPLE_TEST_CSV, "rt") as f:
        lines = [next(f) for _ in range(151)]
    path.write_bytes(b"\xef\xbb\xbf" + "".join(lines).encode())
    return path


def run(capsys, *argv):
    """`fmnist predict ARGV` in this process: the sub-command's own parser and entry point, its errors
    turned into a status as `fmnist` does (pipeline/cli.py, run_command)."""
    parser = argparse.ArgumentParser(prog="fmnist predict")
    add_arguments(parser)
    parser.set_defaults(func=cmd_predict, prog=parser.prog)
    code = run_command(parser.parse_args([str(a) for a in argv]))
    out, err = capsys.readouterr()
    return code, out, err


def messages(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("fmnist predict:")]


def test_folder_glob_and_bom_csv_as_json(server, photos, bom_csv, capsys):
    code, out, err = run(capsys, photos, str(photos / "*.jpg"), bom_csv, "--limit", "5",
                         "--server", server.target, "--format", "json")
    assert code == 0, err
    results = json.loads(out)
    files = [r["file"] for r in results]
    n_photos = len([p for p in photos.rglob("photo_*")]) + 1   # + more/copy
    assert len(results) == n_photos + 5                        # jpgs named by the glob are not repeated
    assert not any(f.endswith(("README.txt", ".hidden.png")) for f in files)
    assert any("/more/copy" in f for f in files)
    for r in results:
        assert r["class"] and 0 < r["probability"] <= 1 and len(r["top3"]) == 3
        assert r["top3"][0]["class"] == r["class"] and r["model_version"] == 4
        assert r["top3"][0]["probability"] >= r["top3"][1]["probability"] >= r["top3"][2]["probability"]
    rows = [r for r in results if ":row" in r["file"]]
    assert [r["file"].rsplit(":", 1)[1] for r in rows] == ["row1", "row2", "row3", "row4", "row5"]
    assert all(r["true_class"] for r in rows)


def test_chunks_give_the_same_answers_and_fit_the_server_limits(server, small_limits_server, photos, bom_csv,
                                                                capsys):
    code, whole, err = run(capsys, photos, bom_csv, "--limit", "all", "--server", server.target, "--format", "csv")
    assert code == 0, err
    code, chunked, err = run(capsys, photos, bom_csv, "--limit", "all", "--server", server.target,
                             "--format", "csv", "--batch-size", "7")
    assert code == 0, err
    assert chunked == whole and len(list(csv.DictReader(io.StringIO(whole)))) == 13 + 150
    # 163 images in one request are over 64 KB: the request is split until it fits, answers unchanged
    for flags in (["--server", small_limits_server.target],
                  ["--rest", "--server", f"127.0.0.1:{small_limits_server.rest_port}"]):
        code, small, err = run(capsys, photos, bom_csv, "--limit", "all", "--format", "csv", *flags)
        assert code == 0, err
        assert _classes(small) == _classes(whole), flags


def _classes(csv_text: str) -> list[tuple[str, str]]:
    return [(r["file"], r["class"]) for r in csv.DictReader(io.StringIO(csv_text))]


def test_rest_answers_as_grpc(server, photos, capsys):
    code, by_grpc, _ = run(capsys, photos, "--server", server.target, "--format", "json")
    code_rest, by_rest, err = run(capsys, photos, "--rest", "--server", f"127.0.0.1:{server.rest_port}", "--json")
    assert code == code_rest == 0, err
    grpc_answers, rest_answers = json.loads(by_grpc), json.loads(by_rest)
    assert [(a["file"], a["class"]) for a in grpc_answers] == [(a["file"], a["class"]) for a in rest_answers]
    assert all(abs(a["probability"] - b["probability"]) < 1e-3 for a, b in zip(grpc_answers, rest_answers))
    assert {a["model_version"] for a in rest_answers} == {4}


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_bad_files_fail_alone_in_one_line_and_the_exit_status_says_so(server, photos, tmp_path, capsys):
    good = sorted(photos.glob("photo_*"))[0]
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(good, bad / good.name)
    (bad / "empty.png").write_bytes(b"")
    (bad / "notes.jpg").write_text("hello\n")
    (bad / "half.png").write_bytes(good.read_bytes()[:300] if good.suffix == ".png" else _png_claiming(50, 50))
    (bad / "bomb.png").write_bytes(_png_claiming(100000, 100000))
    (bad / "line.png").write_bytes(_png_claiming(100000, 1))       # claims little, holds less: damaged
    Image.new("L", (1, 1), 0).save(bad / "dot.png")
    Image.new("RGB", (300, 200), (250, 250, 250)).save(bad / "blank.png")
    (bad / "bad.csv").write_text("label,pixel1\n3,0\n")
    # An unreadable file ("permission denied") is tests/unit/test_unreadable_inputs.py's: the suite
    # runs as root, who reads files whatever their mode, so it runs that check as an unprivileged uid.
    out_file = tmp_path / "answers.csv"
    code, out, err = run(capsys, bad, tmp_path / "missing.png", "--server", server.target,
                         "--format", "csv", "--output", out_file)
    assert code == 1 and out == ""
    rows = {r["file"].rsplit("/", 1)[-1]: r for r in csv.DictReader(open(out_file))}
    assert rows[good.name]["class"] and not rows[good.name]["error"]
    expected_errors = {"empty.png": "empty file", "notes.jpg": "not an image", "half.png": "damaged",
                       "bomb.png": "decompression bomb", "line.png": "damaged", "bad.csv": "pixel columns",
                       "missing.png": "no such file"}
    for name, words in expected_errors.items():
        assert words in rows[name]["error"] and not rows[name]["class"], (name, rows[name])
    for name, words in {"dot.png": "only 1x1", "blank.png": "no garment"}.items():
        assert rows[name]["class"] and words in rows[name]["warning"], rows[name]
    lines = messages(err)
    assert "Traceback" not in err
    assert sum(":" in line and "warning" not in line for line in lines) >= len(expected_errors)
    assert lines[-1].startswith(f"fmnist predict: {len(expected_errors)} of ")


@pytest.mark.parametrize("case", ["closed port", "unknown host", "REST port as gRPC", "gRPC port as REST",
                                  "unknown model", "limit 0", "batch size words", "nothing to read"])
def test_unusable_server_or_arguments_are_one_line_exit_2(server, photos, case, capsys, tmp_path):
    photo = sorted(photos.glob("photo_*"))[0]
    argv = {
        "closed port": [photo, "--server", f"127.0.0.1:{free_port()}"],
        "unknown host": [photo, "--server", "no-such-host.invalid:8500"],
        "REST port as gRPC": [photo, "--server", f"127.0.0.1:{server.rest_port}"],
        "gRPC port as REST": [photo, "--rest", "--server", server.target],
        "unknown model": [photo, "--server", server.target, "--model", "shoes"],
        "limit 0": [photo, "--server", server.target, "--limit", "0"],
        "batch size words": [photo, "--server", server.target, "--batch-size", "many"],
        "nothing to read": [tmp_path / "nothing-*.png", "--server", server.target],
    }[case]
    words = {"closed port": "connection refused", "unknown host": "resolve", "REST port as gRPC": "REST port",
             "gRPC port as REST": "gRPC port", "unknown model": "shoes", "limit 0": "--limit must be at least 1",
             "batch size words": "--batch-size must be a whole number", "nothing to read": "nothing to predict"}[case]
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert "Traceback" not in err and words in err, err
    assert len(messages(err)) == (2 if case == "nothing to read" else 1), err


def test_csv_row_errors_name_file_row_and_column(tmp_path):
    from pipeline.clients.predict import csv_items, expand
    from schema.contract import PIXEL_KEYS

    header = "label," + ",".join(PIXEL_KEYS)
    good = "1," + ",".join(["0"] * 784)
    rows = [good, "2," + ",".join(["0"] * 783), "3," + ",".join(["0"] * 783 + ["x"]),
            "4," + ",".join(["0"] * 10 + ["300"] + ["0"] * 773), good]
    path = tmp_path / "rows.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    items = list(csv_items(path, None))
    assert [i.error is None for i in items] == [True, False, False, False, True]
    assert items[0].true_class == "Trouser" and items[0].pixels.shape == (28, 28)
    assert items[1].name.endswith("rows.csv:row2") and "784 values" in items[1].error
    assert "pixel784" in items[2].error and "not an integer" in items[2].error
    assert "pixel11" in items[3].error and "0..255" in items[3].error
    assert len(list(csv_items(path, 2))) == 2                     # --limit counts rows, good or bad
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    found = expand([str(tmp_path / "empty"), str(tmp_path / "*.csv"), str(path)])
    assert found[0].error == "folder holds no image or CSV files" and found[1:] == [path]


def test_long_runs_show_progress_unless_quiet(server, bom_csv, capsys, monkeypatch):
    from pipeline.clients import predict

    monkeypatch.setattr(predict.Progress, "EVERY", 0.0)  # every chunk counts as "long" here
    code, out, err = run(capsys, bom_csv, "--limit", "all", "--batch-size", "50", "--server", server.target)
    assert code == 0 and len(out.splitlines()) == 150
    progress = [line for line in messages(err) if "inputs answered" in line]
    assert len(progress) >= 3 and progress[-1].startswith("fmnist predict: 150 inputs answered (0 failed)")
    code, out, err = run(capsys, bom_csv, "--limit", "all", "--batch-size", "50", "--server", server.target, "-q")
    assert code == 0 and not messages(err)
