"""Files the user may not read are reported as such, one line each, by `fmnist predict`'s readers
(pipeline/clients/predict.py) and by the pipeline's CSV reader (components/data_input/csv_table.py).

A mode-0 file is readable by root, so as root the check runs in a child process with an
unprivileged uid (setpriv, util-linux): otherwise this branch would never run where the suite runs."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534

CHILD = """
import json, sys
from pathlib import Path
from components.data_input.csv_table import CsvFormatError, read_table
from pipeline.clients.predict import expand, items
found = {Path(i.name).name.split(":")[0]: i.error for i in items(expand(sys.argv[1:]), None, 10**7)}
try:
    read_table(sys.argv[-1])
    found["read_table"] = None
except CsvFormatError as e:
    found["read_table"] = str(e)
print(json.dumps(found))
"""


def _unprivileged() -> list[str]:
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv (util-linux) is missing: cannot drop to an unprivileged uid")
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def test_unreadable_photo_and_csv_say_permission_denied():
    work = Path(tempfile.mkdtemp(prefix="fmnist-unreadable-"))   # not pytest's 0700 tmp_path
    try:
        work.chmod(0o755)
        Image.new("L", (28, 28), 200).save(work / "readable.png")
        shutil.copy(work / "readable.png", work / "locked.png")
        (work / "locked.csv").write_text("label," + ",".join(f"pixel{i}" for i in range(1, 785)) + "\n")
        for name in ("readable.png", "locked.csv"):
            (work / name).chmod(0o644)
        (work / "locked.png").chmod(0)
        (work / "locked.csv").chmod(0)
        args = [str(work / n) for n in ("readable.png", "locked.png", "locked.csv")]
        done = subprocess.run([*_unprivileged(), sys.executable, "-c", CHILD, *args], cwd="/",
                              env={"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                   "HOME": str(work)}, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        found = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        for f in work.iterdir():
            f.chmod(0o644)
        shutil.rmtree(work)
    assert found["readable.png"] is None                       # the same bytes, readable: answered
    assert found["locked.png"] == "unreadable (permission denied)"
    assert found["locked.csv"] == "could not read the file: permission denied"
    assert "permission denied" in found["read_table"]
