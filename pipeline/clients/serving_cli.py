"""`fmnist predict` and `fmnist serve-demo`: this project's clients of the (generic) model server.

They know Fashion-MNIST -- class names, the Kaggle CSV layout, the signatures the export writes --
which is why they live here and not in `serving/`, which serves any SavedModel.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from schema.contract import CLASS_NAMES, IMAGE_SIZE, PIXEL_KEYS


def read_csv_rows(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(labels [N], pixels [N, 784]) of a Kaggle-layout CSV, read and checked by the pipeline's own
    reader (components/data_input/csv_table.py): the same verdicts and messages as ExampleGen's."""
    from components.data_input.csv_table import read_table

    table = read_table(str(path))
    return table.values[:, 0], table.values[:, 1:]


def pixels_example(pixels: np.ndarray):
    """A tf.Example with one int64 feature per pixel, named like the Kaggle CSV columns."""
    import tensorflow as tf

    flat = np.asarray(pixels).reshape(-1)
    feats = {k: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)])) for k, v in zip(PIXEL_KEYS, flat)}
    return tf.train.Example(features=tf.train.Features(feature=feats))


def cmd_predict(args: argparse.Namespace) -> int:
    from pipeline.clients.predict import cmd_predict as run, resolve_server

    resolve_server(args)
    return run(args)  # UsageError: one line and exit 2 (pipeline/cli.py, run_command)


def cmd_serve_demo(args: argparse.Namespace) -> int:
    """Start a server on an ephemeral loopback port, query it over gRPC, print, stop."""
    from pipeline.config import SAMPLE_DATA
    from serving.client import ServingClient
    from serving.model_manager import models_from_base
    from serving.server import ModelServer

    # A CsvFormatError: one line and exit 2 (pipeline/cli.py, run_command).
    labels, rows = read_csv_rows(Path(args.csv or SAMPLE_DATA / "fashion-mnist_test.csv.gz"))
    picks = list(range(0, len(rows), max(1, len(rows) // args.count)))[:args.count]
    with ModelServer(models_from_base(str(Path(args.model_base).resolve())), port=0, rest_port=None) as server:
        print(f"model server on {server.target} serving versions {server.manager.available(args.model)}")
        client = ServingClient(server.target, model=args.model)
        images = rows[picks].astype(np.float32).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
        right = 0
        for i, p in zip(picks, client.predict_images(images)):
            right += CLASS_NAMES[labels[i]] == p.class_name
            top = ", ".join(f"{c} {s:.2f}" for c, s in p.top(3, CLASS_NAMES))
            print(f"  test row {i + 1:3d}: true {CLASS_NAMES[labels[i]]:<12} predicted {p.class_name:<12} [{top}]")
        print(f"{right}/{len(picks)} right, answered over gRPC by model version {p.model_version}")
        client.close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from pipeline.clients.predict import add_arguments

    predict = sub.add_parser("predict", help="classify photos, folders, globs or Kaggle CSV rows with a model server",
                             description="Classify photos (converted the way Fashion-MNIST was made), folders of "
                                         "them, globs or Kaggle CSV rows over gRPC or REST. Exit status 1 when "
                                         "any input failed, 2 for bad arguments or an unusable server.")
    add_arguments(predict)
    predict.set_defaults(func=cmd_predict)

    demo = sub.add_parser("serve-demo", help="serve the pushed model on loopback, query a few test rows, stop")
    demo.add_argument("--model-base", default="outputs/sample/serving")
    demo.add_argument("--model", default="fmnist")
    demo.add_argument("--csv", help="Kaggle-format CSV to take rows from (default: the sample test CSV)")
    demo.add_argument("--count", type=int, default=8)
    demo.set_defaults(func=cmd_serve_demo)
