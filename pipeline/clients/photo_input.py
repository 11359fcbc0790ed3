"""Turns a product photo into the 28x28 input a Fashion-MNIST model was trained on.

Fashion-MNIST was made from Zalando's product thumbnails (a garment on a #fdfdfd background) by
(paper, section 2): trimming the edges close to the corner colour (5% of the maximum intensity),
resizing the longest edge to 28, sharpening (Gaussian, radius and sigma 1.0), extending the short
edge to 28 with the image centred, negating and converting to 8-bit grey. Nearly every image's
brightest pixel is 254-255 and its longest side spans the full 28 pixels, so a photo has to end
up the same way: garment touching two opposite edges, black background, full contrast.

`to_fashion_mnist` follows those steps in that order on a decoded photo, adding what a photo
that was not shot and cleaned by Zalando needs:

* trimming: edge lines of the border's colour are peeled off (as ImageMagick's trim does), in
  rounds while what comes off is a thin frame, so borders and frames go first and the last
  round's colour is the background. This runs on a copy of at most 320 pixels, block-averaged
  and 3x3-median-filtered, so that sensor noise and JPEG artefacts do not stop it; the
  tolerance (the paper's 5%) grows with the noise measured there. Inside what is left, pixels
  count as garment only when they differ from the background by more than a fifth of the
  garment's own contrast, so soft shadows and specks do not widen the box; its edges are then
  placed at full working size.
* negating relative to the background colour (a white balance): a grey or tinted background
  becomes 0, a dark garment bright, a coloured garment the grey of its luminance, as in the
  dataset. A photo whose background is dark (already light-on-dark) is not inverted.
* resizing with an area filter rather than by skipping pixels: the paper subsampled 51x73
  thumbnails, a photo may be 40 times larger and skipping would keep its noise, not its shape.
* contrast stretched to a peak of 255, as the dataset's images are.
* no sharpening: measured with benchmarks/photo_accuracy.py, unsharp masking changed accuracy on
  the photos by no more than noise (BENCHMARKS.md, "Photos next to raw rows"), so it is left out.

`open_photo` decodes any file PIL reads with memory bounded whatever the header claims: the
pixel count is checked before decoding, JPEGs are decoded at reduced scale, everything else is
reduced to a working size before it becomes floats; EXIF orientation, transparency, palettes,
16-bit and float images are handled. Problems a user can cause are `PhotoError` with a one-line
reason; answers that cannot mean much come with warnings.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, UnidentifiedImageError

from components.errors import FmnistError

log = logging.getLogger(__name__)

SIZE = 28
DETECT_EDGE = 320              # the garment's box and the background are found at this size
WORK_EDGE = 1024               # longest edge decoded photos are reduced to before any float work
DEFAULT_MAX_PIXELS = 64_000_000  # refuse larger images before decoding (PIL's own bomb limit is 89M)
FUZZ = 0.05 * 255              # the paper's trim closeness: 5% of the maximum intensity
SHADOW_SHARE = 0.2             # pixels within 20% of the garment's contrast of the background are not garment
MIN_CONTRAST = 12.0            # below this (0..255 scale) nothing stands out from the background
TINY_EDGE = 8                  # garments smaller than this (original pixels) carry no shape
EXTREME_ASPECT = 12.0          # thinner than 1:12 cannot look like any Fashion-MNIST class

# EXIF orientation tag value -> the transposition that puts the picture upright (PIL's exif_transpose).
_ORIENTATION = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, what PIL's convert("L") uses


class PhotoError(FmnistError):
    """A file that cannot be turned into a model input; the message is one line for the user."""


@dataclasses.dataclass
class Photo:
    """A decoded photo: RGB floats 0..255 at working size, and how much it was reduced."""
    rgb: np.ndarray
    scale: float                 # original pixels per working pixel
    original_size: tuple[int, int]
    warnings: list[str]


@dataclasses.dataclass
class Converted:
    pixels: np.ndarray           # [28, 28] uint8, light garment on black
    warnings: list[str]


# ---------------------------------------------------------------------------------------------
# decoding


def open_photo(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Photo:
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise PhotoError("empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return _decode(image, max_pixels)
    except PhotoError:
        raise
    except Image.DecompressionBombError as e:
        raise PhotoError(f"refused as a decompression bomb ({e})") from None
    except UnidentifiedImageError:
        raise PhotoError("not an image (no image format recognises it)") from None
    except PermissionError:
        raise PhotoError("unreadable (permission denied)") from None
    except IsADirectoryError:
        raise PhotoError("is a directory") from None
    except FileNotFoundError:
        raise PhotoError("no such file") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as e:
        # damaged/truncated data, unsupported variants of a format (PIL raises all of these)
        raise PhotoError(f"damaged or unsupported image ({' '.join(str(e).split())[:160]})") from None


def _decode(image: Image.Image, max_pixels: int) -> Photo:
    width, height = image.size
    if width < 1 or height < 1:
        raise PhotoError(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise PhotoError(f"refused as a decompression bomb: {width}x{height} = {width * height:,} pixels, "
                         f"over the limit of {max_pixels:,}")
    notes: list[str] = []
    orientation = image.getexif().get(0x0112) if hasattr(image, "getexif") else None
    if image.format == "JPEG" and image.mode in ("RGB", "L", "CMYK"):
        # libjpeg decodes at 1/2, 1/4 or 1/8 scale directly: a 100 MP JPEG never exists in memory.
        factor = max(width, height) / WORK_EDGE
        if factor > 1:
            image.draft(image.mode, (math.ceil(width / factor), math.ceil(height / factor)))
    image.load()
    turn = _ORIENTATION.get(orientation)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        grey, note = _deep_to_grey(image)
        if note:
            notes.append(note)
        if turn is not None:
            grey = np.asarray(Image.fromarray(grey, "F").transpose(turn), dtype=np.float32)
        rgb = np.repeat(grey[..., None], 3, axis=2)
    else:
        small = _to_rgb8(_reduce(image))
        rgb = np.asarray(small.transpose(turn) if turn is not None else small, dtype=np.float32)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    scale = max(width, height) / max(rgb.shape[0], rgb.shape[1])
    return Photo(rgb, scale, (width, height), notes)


def _reduce(image: Image.Image) -> Image.Image:
    """Down to WORK_EDGE with an area filter, in the image's own 8-bit mode (no float copy of a big image)."""
    width, height = image.size
    factor = max(width, height) / WORK_EDGE
    if factor <= 1:
        return image
    if image.mode == "P":
        image = image.convert("RGBA")
    elif image.mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("RGB")
    whole = int(factor)
    if whole >= 2 and image.mode in ("L", "LA", "RGB", "RGBA", "La", "RGBa"):
        image = image.reduce(whole)  # box average over whole blocks, cheap
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    return image.resize(size, Image.BOX) if image.size != size else image


def _to_rgb8(image: Image.Image) -> Image.Image:
    """Transparency is composed onto white (a product photo's background); everything else to RGB."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        image = image.convert("RGBA")
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, image).convert("RGB")
    return image.convert("RGB")


def _deep_to_grey(image: Image.Image) -> tuple[np.ndarray, str | None]:
    """16-bit and 32-bit integer or float grey images -> 0..255, by the range their type implies.

    16-bit data is divided by 257 (65535 -> 255). Floats in 0..1 are taken as 0..1, in 0..255 as
    8-bit values; anything else is stretched from its own minimum to maximum, with a note, since
    what the numbers meant is a guess."""
    note = None
    bits16 = image.mode.startswith("I;16")
    grey = _reduce(image.convert("F"))
    values = np.asarray(grey, dtype=np.float32).copy()
    finite = np.isfinite(values)
    if not finite.all():
        note = "image has NaN or infinite pixels (set to the lowest value)"
        values[~finite] = np.min(values[finite]) if finite.any() else 0.0
    low, high = float(values.min()), float(values.max())
    if bits16 or (image.mode == "I" and low >= 0 and high > 255 and high <= 65535):
        values = values / 257.0
    elif image.mode == "F" and low >= 0 and high <= 1.0:
        values = values * 255.0
    elif low >= 0 and high <= 255:
        pass
    else:
        note = (f"{image.mode} image with values {low:g}..{high:g}: stretched from its minimum to maximum; "
                "the answer depends on that guess")
        values = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return values.astype(np.float32), note


# ---------------------------------------------------------------------------------------------
# conversion


def _noise_sigma(rgb: np.ndarray, smooth: np.ndarray) -> float:
    """Robust noise level of the outer ring of the picture (median absolute deviation)."""
    residual = (rgb - smooth).mean(axis=2)
    ring = np.concatenate([residual[:2].ravel(), residual[-2:].ravel(), residual[:, :2].ravel(),
                           residual[:, -2:].ravel()])
    return float(1.4826 * np.median(np.abs(ring - np.median(ring))))


def _ring(region: np.ndarray) -> np.ndarray:
    return np.concatenate([region[0], region[-1], region[:, 0], region[:, -1]])


def _peel(smooth: np.ndarray, tolerance: float) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """ImageMagick's trim: take off edge lines close (within `tolerance`) to the colour of the
    border, from every side, up to the first line that is not. Repeated while what came off was a
    frame (a thin ring on all four sides), so nested borders go one after the other and the last
    round is the background. Returns the box left and that background colour."""
    top, bottom, left, right = 0, smooth.shape[0], 0, smooth.shape[1]
    reference = np.median(_ring(smooth), axis=0)

    def kept(region: np.ndarray, axis: int) -> tuple[int, int] | None:
        """First and one past the last line along `axis` that stays: lines of the reference colour
        go, and after them up to two lines of one colour of their own (the blend between a frame
        and what it surrounds, after reduction or JPEG)."""
        lines = region if axis == 0 else region.transpose(1, 0, 2)
        allowance = 0
        if lines.shape[1] > 8:
            # the ends of a line may be what is left of a frame at the sides: not judged
            cut = 2 if first_round else max(2, int(0.08 * lines.shape[1]))
            lines = lines[:, cut:-cut]
            allowance = max(1, lines.shape[1] // 200)
        like_reference = (np.abs(lines - reference).max(axis=2) > tolerance).sum(axis=1) <= allowance
        if like_reference.all():
            return None
        own = np.median(lines, axis=1, keepdims=True)
        one_colour = (np.abs(lines - own).max(axis=2) > tolerance).sum(axis=1) <= allowance

        def edge(ref: np.ndarray, uni: np.ndarray) -> int:
            i = 0
            if not first_round:  # what is left of the last frame (its blend) in front of this colour
                while i < max(2, int(0.08 * len(ref))) and i < len(ref) and uni[i] and not ref[i]:
                    i += 1
            run = i
            while i < len(ref) and ref[i]:
                i += 1
            if i > run:  # then at most two blend lines into what the frame surrounds
                stop = min(len(ref), i + 2)
                while i < stop and uni[i] and not ref[i]:
                    i += 1
            return i if i > run else 0

        start = edge(like_reference, one_colour)
        end = len(lines) - edge(like_reference[::-1], one_colour[::-1])
        return (start, end) if end > start else None

    for round_number in range(16):
        first_round = round_number == 0
        region = smooth[top:bottom, left:right]
        inner = region[2:-2, 2:-2] if not first_round and min(region.shape[:2]) > 8 else region
        reference = np.median(_ring(inner), axis=0)  # (inside what may be blend lines of the last frame)
        rows, cols = kept(region, 0), kept(region, 1)
        if rows is None or cols is None:  # all one colour: nothing to trim to
            break
        peeled = (rows[0], region.shape[0] - rows[1], cols[0], region.shape[1] - cols[1])
        top, bottom, left, right = top + rows[0], top + rows[1], left + cols[0], left + cols[1]
        limits = (region.shape[0], region.shape[0], region.shape[1], region.shape[1])
        log.debug("peel round %d: reference %s, peeled %s", round_number, reference, peeled)
        if not all(1 <= p <= max(1, 0.08 * n) for p, n in zip(peeled, limits)):
            break  # not a frame: this was the background
    return (top, bottom, left, right), reference


def _refine(value_of, box: tuple[int, int, int, int], reach: int, threshold: float,
            size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Moves each edge of a box found at reduced size to the first full-size line, within
    `reach` of it, with at least two pixels above `threshold`."""
    top, bottom, left, right = box
    height, width = size

    def first(lines: np.ndarray) -> int | None:
        hits = np.nonzero((lines > threshold).sum(axis=1) >= 2)[0]
        return int(hits[0]) if len(hits) else None

    t0, b1 = max(0, top - reach), min(height, bottom + reach)
    l0, r1 = max(0, left - reach), min(width, right + reach)
    hit = first(value_of(t0, min(b1, top + reach), l0, r1))
    new_top = t0 + hit if hit is not None else top
    hit = first(value_of(max(t0, bottom - reach), b1, l0, r1)[::-1])
    new_bottom = b1 - hit if hit is not None else bottom
    hit = first(value_of(t0, b1, l0, min(r1, left + reach)).T)
    new_left = l0 + hit if hit is not None else left
    hit = first(value_of(t0, b1, max(l0, right - reach), r1).T[::-1])
    new_right = r1 - hit if hit is not None else right
    if new_bottom > new_top and new_right > new_left:
        return new_top, new_bottom, new_left, new_right
    return box


def negate(rgb: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Garment intensity 0..255 against `background`: white-balanced luminance, inverted when the
    background is light (a product photo) and kept when it is dark (already Fashion-MNIST-like)."""
    bg = np.maximum(background.astype(np.float32), 1.0)
    if float(bg @ _LUMA) >= 128:
        return np.clip(255.0 * (1.0 - (rgb / bg) @ _LUMA), 0, 255)
    lum, bg_lum = rgb @ _LUMA, float(bg @ _LUMA)
    return np.clip((lum - bg_lum) * 255.0 / max(255.0 - bg_lum, 1.0), 0, 255)


def _block_mean(rgb: np.ndarray, ky: int, kx: int) -> np.ndarray:
    h, w = rgb.shape[0] // ky, rgb.shape[1] // kx
    return rgb[:h * ky, :w * kx].reshape(h, ky, w, kx, 3).mean(axis=(1, 3))


def to_fashion_mnist(photo: Photo) -> Converted:
    rgb, notes = photo.rgb, list(photo.warnings)
    height, width = rgb.shape[:2]
    # Where the garment is and what the background is are found on a copy of at most
    # DETECT_EDGE pixels (block averages: noise shrinks with the block size) ...
    k = max(1, math.ceil(max(height, width) / DETECT_EDGE))
    ky, kx = min(k, height), min(k, width)
    detect = _block_mean(rgb, ky, kx) if k > 1 else rgb
    if min(detect.shape[:2]) >= 3:
        # ... through a 3x3 median: takes the noise and JPEG speckle out, keeps edges where they are
        smooth = np.asarray(Image.fromarray(np.clip(np.rint(detect), 0, 255).astype(np.uint8), "RGB")
                            .filter(ImageFilter.MedianFilter(3)), dtype=np.float32)
    else:
        smooth = detect
    noise = _noise_sigma(detect, smooth) if min(smooth.shape[:2]) > 4 else 0.0
    tolerance = max(FUZZ, 2.0 * noise)  # a 3x3 median leaves about 0.4 of the noise: this is ~5 sigma
    box, background = _peel(smooth, tolerance)

    top, bottom, left, right = box
    inside = negate(smooth[top:bottom, left:right], background)
    contrast = float(np.percentile(inside, 99.5)) if inside.size else 0.0
    if contrast < MIN_CONTRAST and max(photo.original_size) >= TINY_EDGE:
        notes.append("no garment found (blank or nearly uniform image); the answer means little")
    if contrast >= MIN_CONTRAST:
        garment = inside > max(tolerance, SHADOW_SHARE * contrast)
        rows, cols = np.nonzero(garment.any(axis=1))[0], np.nonzero(garment.any(axis=0))[0]
        if len(rows) and len(cols):
            top, bottom, left, right = top + rows[0], top + rows[-1] + 1, left + cols[0], left + cols[-1] + 1
    # ... and the box is then cut from the full working-size picture, its edges refined there.
    top, left = top * ky, left * kx
    bottom = height if bottom == smooth.shape[0] else bottom * ky
    right = width if right == smooth.shape[1] else right * kx
    if k > 1 and contrast >= MIN_CONTRAST:
        threshold = max(tolerance, SHADOW_SHARE * contrast, 4.0 * noise * k)
        top, bottom, left, right = _refine(lambda y0, y1, x0, x1: negate(rgb[y0:y1, x0:x1], background),
                                           (top, bottom, left, right), k, threshold, (height, width))
    value = negate(rgb[top:bottom, left:right], background)
    if contrast >= MIN_CONTRAST:
        value[value < tolerance] = 0.0  # background noise and soft shadow inside the box are not garment
    else:
        value[:] = 0.0  # stretching noise to full contrast would invent a garment
    crop = value

    h, w = crop.shape
    if max(photo.original_size) < TINY_EDGE:
        width, height = photo.original_size
        notes.append(f"the image is only {width}x{height} pixels; the answer means little")
    elif contrast >= MIN_CONTRAST:
        if max(h, w) * photo.scale < TINY_EDGE:
            notes.append(f"the garment is only {max(1, round(w * photo.scale))}x{max(1, round(h * photo.scale))} "
                         "pixels; the answer means little")
        elif max(h, w) / max(1, min(h, w)) > EXTREME_ASPECT:
            notes.append(f"the garment is {max(h, w) // max(1, min(h, w))} times longer than wide; "
                         "no Fashion-MNIST class looks like that")
    factor = SIZE / max(h, w)
    size = (max(1, min(SIZE, round(w * factor))), max(1, min(SIZE, round(h * factor))))
    small = np.asarray(Image.fromarray(crop.astype(np.float32), "F").resize(size, Image.BOX), dtype=np.float32)
    canvas = np.zeros((SIZE, SIZE), np.float32)
    y0, x0 = (SIZE - size[1]) // 2, (SIZE - size[0]) // 2
    canvas[y0:y0 + size[1], x0:x0 + size[0]] = small
    canvas = np.clip(canvas, 0, None)
    peak = float(canvas.max())
    if peak > 0:
        canvas *= 255.0 / peak
    return Converted(np.clip(np.rint(canvas), 0, 255).astype(np.uint8), notes)


def load_photo(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Converted:
    """The file at `path` as a Fashion-MNIST input; `PhotoError` when it cannot be one."""
    return to_fashion_mnist(open_photo(path, max_pixels))


def fashion_mnist_input(image: Image.Image) -> np.ndarray:
    """An in-memory PIL image as a [28, 28] uint8 Fashion-MNIST input (warnings dropped)."""
    return to_fashion_mnist(_decode(image, DEFAULT_MAX_PIXELS)).pixels


def is_image_name(name: str) -> bool:
    """Whether a file name has an extension some PIL plugin claims (for picking files out of folders)."""
    return os.path.splitext(name)[1].lower() in Image.registered_extensions()
