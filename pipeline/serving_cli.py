"""`fmnist predict` and `fmnist serve-demo`: this project's clients of the (generic) model server.

They know Fashion-MNIST -- class names, the Kaggle CSV layout, the signatures the export writes --
which is why they live here and not in `serving/`, which serves any SavedModel.
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

import numpy as np

from pipeline.features import CLASS_NAMES, PIXEL_KEYS


def read_csv_rows(path: Path) -> tuple[list[int], list[list[int]]]:
    opener = gzip.open if path.read_bytes()[:2] == b"\x1f\x8b" else open
    with opener(path, "rt") as f:
        header = f.readline().strip().split(",")
        rows = [[int(v) for v in line.split(",")] for line in f if line.strip()]
    label_at = header.index("label") if "label" in header else None
    labels = [r[label_at] for r in rows] if label_at is not None else [None] * len(rows)
    pixels = [[v for i, v in enumerate(r) if i != label_at] for r in rows]
    return labels, pixels


def pixels_example(pixels: np.ndarray):
    """A tf.Example with one int64 feature per pixel, named like the Kaggle CSV columns."""
    import tensorflow as tf

    flat = np.asarray(pixels).reshape(-1)
    feats = {k: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)])) for k, v in zip(PIXEL_KEYS, flat)}
    return tf.train.Example(features=tf.train.Features(feature=feats))


def cmd_predict(args: argparse.Namespace) -> int:
    from serving.client import ServingClient
    from serving.image_input import load_image

    images, names, truths = [], [], []
    for item in args.inputs:
        path = Path(item)
        if not path.exists():
            print(f"fmnist predict: {path}: no such file", file=sys.stderr)
            return 2
        if path.name.endswith((".csv", ".csv.gz")):
            labels, rows = read_csv_rows(path)
            rows, labels = rows[:args.limit], labels[:args.limit]
            images += [np.array(r, dtype=np.float32).reshape(28, 28) for r in rows]
            names += [f"{path.name}:row{i + 1}" for i in range(len(rows))]
            truths += labels
        else:
            try:
                images.append(load_image(path))
            except OSError as e:
                print(f"fmnist predict: {path}: not an image PIL can read ({e})", file=sys.stderr)
                return 2
            names.append(str(path))
            truths.append(None)
    client = ServingClient(args.server, model=args.model)
    try:
        predictions = client.predict_images(np.stack(images), version=args.version)
    finally:
        client.close()
    results = []
    for name, truth, p in zip(names, truths, predictions):
        results.append({"input": name, "class_name": p.class_name, "class_id": p.class_id,
                         "top": [{"class_name": c, "probability": round(s, 4)} for c, s in p.top(3, CLASS_NAMES)],
                         "true_class": CLASS_NAMES[truth] if truth is not None else None,
                         "model_version": p.model_version})
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        for r in results:
            top = ", ".join(f"{t['class_name']} {t['probability']:.2f}" for t in r["top"])
            truth = f"  (true: {r['true_class']})" if r["true_class"] else ""
            print(f"{r['input']}: {r['class_name']}{truth}   [{top}]")
    return 0


def cmd_serve_demo(args: argparse.Namespace) -> int:
    """Start a server on an ephemeral loopback port, query it over gRPC, print, stop."""
    from pipeline.config import SAMPLE_DATA
    from serving.client import ServingClient
    from serving.model_manager import models_from_base
    from serving.server import ModelServer

    labels, rows = read_csv_rows(Path(args.csv or SAMPLE_DATA / "fashion-mnist_test.csv.gz"))
    picks = list(range(0, len(rows), max(1, len(rows) // args.count)))[:args.count]
    with ModelServer(models_from_base(str(Path(args.model_base).resolve())), port=0, rest_port=None) as server:
        print(f"model server on {server.target} serving versions {server.manager.available(args.model)}")
        client = ServingClient(server.target, model=args.model)
        images = np.array([rows[i] for i in picks], dtype=np.float32).reshape(-1, 28, 28)
        right = 0
        for i, p in zip(picks, client.predict_images(images)):
            right += CLASS_NAMES[labels[i]] == p.class_name
            top = ", ".join(f"{c} {s:.2f}" for c, s in p.top(3, CLASS_NAMES))
            print(f"  test row {i + 1:3d}: true {CLASS_NAMES[labels[i]]:<12} predicted {p.class_name:<12} [{top}]")
        print(f"{right}/{len(picks)} right, answered over gRPC by model version {p.model_version}")
        client.close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    predict = sub.add_parser("predict", help="classify photos (PNG/JPEG) or Kaggle CSV rows over gRPC")
    predict.add_argument("inputs", nargs="+", metavar="IMAGE_OR_CSV")
    predict.add_argument("--server", default="127.0.0.1:8500")
    predict.add_argument("--model", default="fmnist")
    predict.add_argument("--version", type=int)
    predict.add_argument("--limit", type=int, default=20, help="rows per CSV")
    predict.add_argument("--json", action="store_true")
    predict.set_defaults(func=cmd_predict)

    demo = sub.add_parser("serve-demo", help="serve the pushed model on loopback, query a few test rows, stop")
    demo.add_argument("--model-base", default="outputs/sample/serving")
    demo.add_argument("--model", default="fmnist")
    demo.add_argument("--csv", help="Kaggle-format CSV to take rows from (default: the sample test CSV)")
    demo.add_argument("--count", type=int, default=8)
    demo.set_defaults(func=cmd_serve_demo)
