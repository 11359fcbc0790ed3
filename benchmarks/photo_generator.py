"""Product-style photos made from Fashion-MNIST rows, for measuring the photo path honestly.

A 28x28 row (light garment on black) is turned into what a shop or a phone would produce: the
garment dark or coloured on a near-white (not white) background, a few hundred pixels tall,
off-centre on a non-square canvas, with sensor noise, a slight lighting gradient, sometimes low
contrast, saved as PNG or as JPEG at varying quality, a few JPEGs stored sideways with an EXIF
orientation tag. Each photo depends only on (seed, row index), so the set is reproducible
byte for byte and any single photo can be regenerated alone.

    python benchmarks/photo_generator.py --csv data/sample/fashion-mnist_test.csv.gz --count 50 --out /tmp/photos
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import gzip
import io
from pathlib import Path

import numpy as np
from PIL import Image


@dataclasses.dataclass(frozen=True)
class PhotoSpec:
    """What was drawn for one photo (written to the manifest so failures can be grouped)."""
    garment_px: int
    canvas: tuple[int, int]
    background: float
    tint: tuple[float, float, float]
    depth: float
    noise: float
    gradient: float
    fmt: str
    quality: int
    orientation: int


def draw_spec(rng: np.random.Generator, bbox_hw: tuple[int, int]) -> PhotoSpec:
    garment_px = int(rng.integers(120, 481))                     # longest side of the garment
    scale = garment_px / max(bbox_hw)
    gh, gw = round(bbox_hw[0] * scale), round(bbox_hw[1] * scale)
    canvas = (gw + int(rng.integers(gw // 10 + 4, gw + 200)), gh + int(rng.integers(gh // 10 + 4, gh // 2 + 120)))
    coloured = rng.random() < 0.6
    tint = tuple(float(t) for t in (rng.uniform(0.35, 1.0, 3) if coloured else np.ones(3)))
    tint = tuple(t / max(tint) for t in tint)                    # strongest channel fully absorbed
    fmt = "JPEG" if rng.random() < 0.5 else "PNG"
    return PhotoSpec(
        garment_px=garment_px, canvas=canvas, background=float(rng.uniform(215, 252)), tint=tint,
        depth=float(rng.uniform(0.45, 1.0) if rng.random() < 0.8 else rng.uniform(0.25, 0.45)),
        noise=float(rng.uniform(0.0, 6.0)), gradient=float(rng.uniform(-0.04, 0.04)), fmt=fmt,
        quality=int(rng.integers(70, 96)),
        orientation=int(rng.choice([6, 8])) if fmt == "JPEG" and rng.random() < 0.1 else 1)


def make_photo(pixels: np.ndarray, seed: int, index: int) -> tuple[bytes, PhotoSpec]:
    """The encoded photo (PNG or JPEG bytes) for one 28x28 row."""
    rng = np.random.default_rng([seed, index])
    v = np.asarray(pixels, dtype=np.float32).reshape(28, 28)
    rows, cols = np.nonzero(v.any(axis=1))[0], np.nonzero(v.any(axis=0))[0]
    if len(rows) == 0:
        rows, cols = np.arange(28), np.arange(28)
    v = v[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    spec = draw_spec(rng, v.shape)
    scale = spec.garment_px / max(v.shape)
    size = (max(1, round(v.shape[1] * scale)), max(1, round(v.shape[0] * scale)))
    big = np.clip(np.asarray(Image.fromarray(v, "F").resize(size, Image.BICUBIC), dtype=np.float32), 0, 255) / 255.0

    width, height = spec.canvas
    background = np.clip(spec.background + rng.uniform(-6, 6, 3), 0, 255).astype(np.float32)
    photo = np.empty((height, width, 3), np.float32)
    photo[:] = background
    x0 = int(rng.integers(0, width - size[0] + 1))
    y0 = int(rng.integers(0, height - size[1] + 1))
    absorbed = spec.depth * big[..., None] * np.array(spec.tint, np.float32)  # reflectance lost per channel
    photo[y0:y0 + size[1], x0:x0 + size[0]] *= 1.0 - absorbed
    light = 1.0 + spec.gradient * (np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None, None])
    photo *= light
    photo += rng.normal(0.0, spec.noise, photo.shape).astype(np.float32)
    image = Image.fromarray(np.clip(np.rint(photo), 0, 255).astype(np.uint8), "RGB")

    out = io.BytesIO()
    if spec.fmt == "JPEG":
        exif = Image.Exif()
        if spec.orientation != 1:
            # stored sideways, as a phone does; the tag says how to turn it upright
            image = image.transpose(Image.Transpose.ROTATE_90 if spec.orientation == 6 else Image.Transpose.ROTATE_270)
            exif[0x0112] = spec.orientation
        image.save(out, "JPEG", quality=spec.quality, exif=exif.tobytes())
    else:
        image.save(out, "PNG")
    return out.getvalue(), spec


def read_rows(path: Path, count: int | None = None, seed: int = 0) -> tuple[list[int], list[int], np.ndarray]:
    """(row numbers, labels, pixels [N, 28, 28]) -- `count` rows picked with `seed`, in file order."""
    opener = gzip.open if path.read_bytes()[:2] == b"\x1f\x8b" else open
    with opener(path, "rt", encoding="utf-8-sig") as f:
        header = f.readline().strip().split(",")
        data = np.loadtxt(f, delimiter=",", dtype=np.int32, ndmin=2)
    label_at = header.index("label")
    labels = data[:, label_at]
    pixels = np.delete(data, label_at, axis=1).reshape(-1, 28, 28)
    picks = np.arange(len(data))
    if count is not None and count < len(data):
        picks = np.sort(np.random.default_rng(seed).choice(len(data), count, replace=False))
    return [int(i) for i in picks], [int(labels[i]) for i in picks], pixels[picks]


def generate(csv_path: Path, out_dir: Path, count: int | None, seed: int) -> Path:
    """Photos for `count` rows of `csv_path` into `out_dir`, plus manifest.csv (file, row, label, spec)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    numbers, labels, pixels = read_rows(csv_path, count, seed)
    manifest = out_dir / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "row", "label", *[field.name for field in dataclasses.fields(PhotoSpec)]])
        for number, label, image in zip(numbers, labels, pixels):
            data, spec = make_photo(image, seed, number)
            name = f"photo_{number + 1:05d}.{'jpg' if spec.fmt == 'JPEG' else 'png'}"
            (out_dir / name).write_bytes(data)
            writer.writerow([name, number + 1, label, *dataclasses.astuple(spec)])
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=Path("data/sample/fashion-mnist_test.csv.gz"))
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    print(generate(args.csv, args.out, args.count, args.seed))


if __name__ == "__main__":
    main()
