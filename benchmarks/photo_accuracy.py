"""Accuracy on product-style photos next to accuracy on the same test rows raw, one model, one run.

The photos come from `benchmarks/photo_generator.py` (seeded, reproducible); each is read back
from its file and converted by `pipeline.clients.photo_input.load_photo` -- exactly what `fmnist predict`
does with a photo -- and both sets go through the model's `serving_images_uint8` signature
in this process. The gap between the two accuracies is what the photo path costs.

    python benchmarks/photo_accuracy.py --csv ../shared/data/fashion-mnist/fashion-mnist_test.csv.gz \
        --model outputs/serving/fmnist --count 500
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.photo_generator import generate, read_rows
from pipeline.clients.photo_input import load_photo


def newest_version(model: Path) -> Path:
    """A SavedModel directory, or the newest numeric version under a model base directory."""
    if (model / "saved_model.pb").exists():
        return model
    from serving.versions import list_versions

    versions = {v: path for v, path in list_versions(str(model)).items() if (Path(path) / "saved_model.pb").exists()}
    if not versions:
        raise SystemExit(f"{model}: neither a SavedModel nor a directory of numbered versions")
    return Path(versions[max(versions)])


def classify(model_dir: Path, images: np.ndarray) -> np.ndarray:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    serve = tf.saved_model.load(str(model_dir)).signatures["serving_images_uint8"]
    ids = [serve(images=tf.constant(images[i:i + 256]))["class_id"].numpy() for i in range(0, len(images), 256)]
    return np.concatenate(ids)


def band(value: float, edges: list[float]) -> str:
    for low, high in zip(edges, edges[1:]):
        if low <= value < high:
            return f"{low:g}-{high:g}"
    return f">={edges[-1]:g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=Path("data/sample/fashion-mnist_test.csv.gz"))
    parser.add_argument("--model", type=Path, default=Path("outputs/serving/fmnist"),
                        help="a SavedModel or a model base with numbered versions (newest used)")
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--photos", type=Path, help="keep the photos here (default: a temporary directory)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()

    model_dir = newest_version(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        photos = args.photos or Path(tmp)
        started = time.perf_counter()
        manifest = generate(args.csv, photos, args.count, args.seed)
        generate_s = time.perf_counter() - started
        entries = list(csv.DictReader(open(manifest)))
        _, labels, raw = read_rows(args.csv, args.count, args.seed)
        converted, seconds, warned = [], [], 0
        for entry in entries:
            t0 = time.perf_counter()
            result = load_photo(photos / entry["file"])
            seconds.append(time.perf_counter() - t0)
            converted.append(result.pixels)
            warned += bool(result.warnings)

    labels = np.array(labels)
    raw_ids = classify(model_dir, raw.astype(np.uint8))
    photo_ids = classify(model_dir, np.stack(converted))
    raw_acc, photo_acc = float(np.mean(raw_ids == labels)), float(np.mean(photo_ids == labels))
    groups: dict[str, list[int]] = {}
    for i, entry in enumerate(entries):
        for key in (f"format {entry['fmt']}", f"depth {band(float(entry['depth']), [0, 0.45, 0.7])}",
                    f"noise {band(float(entry['noise']), [0, 2, 4])}",
                    f"background {band(float(entry['background']), [0, 230, 245])}",
                    "coloured" if entry["tint"] != str((1.0, 1.0, 1.0)) else "neutral grey"):
            groups.setdefault(key, []).append(i)
    figures = {
        "model": str(model_dir), "csv": str(args.csv), "photos": len(entries), "seed": args.seed,
        "raw_accuracy": round(raw_acc, 4), "photo_accuracy": round(photo_acc, 4),
        "gap_points": round(100 * (raw_acc - photo_acc), 2),
        "same_answer": round(float(np.mean(raw_ids == photo_ids)), 4),
        "photos_warned": warned,
        "convert_ms_median": round(1000 * statistics.median(seconds), 1),
        "generate_s": round(generate_s, 1),
        "groups": {k: {"n": len(v), "raw": round(float(np.mean(raw_ids[v] == labels[v])), 3),
                       "photo": round(float(np.mean(photo_ids[v] == labels[v])), 3)}
                   for k, v in sorted(groups.items())},
    }
    print(f"model {model_dir}, {len(entries)} test rows of {args.csv} (seed {args.seed})")
    print(f"  raw rows     accuracy {100 * raw_acc:6.2f}%")
    print(f"  photos       accuracy {100 * photo_acc:6.2f}%   gap {figures['gap_points']:+.2f} points, "
          f"same answer on {100 * figures['same_answer']:.1f}%, {warned} warned")
    print(f"  conversion   median {figures['convert_ms_median']} ms per photo")
    for key, g in figures["groups"].items():
        print(f"    {key:<22} n={g['n']:<4} raw {100 * g['raw']:5.1f}%  photo {100 * g['photo']:5.1f}%")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
