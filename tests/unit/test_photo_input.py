"""The photo conversion on synthetic photos whose right answer is known, and hostile files.

A 28x28 pattern is blown up by an integer factor (nearest neighbour) and drawn dark on a light
canvas: undoing that exactly is what Fashion-MNIST's own conversion does (trim, longest edge to
28, centre, negate), so the result must be the pattern itself, give or take what noise, JPEG,
colour, shadows and frames leave. No TensorFlow here: these run in seconds.
"""
import io
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

from benchmarks.photo_generator import generate, make_photo, read_rows
from conftest import SAMPLE_TEST_CSV
from pipeline.clients.photo_input import SIZE, PhotoError, fashion_mnist_input, load_photo, open_photo, to_fashion_mnist


def pattern() -> np.ndarray:
    """A garment-like 28x28 pattern, light on black, spanning the full height (as dataset images do):
    a 'shirt' 28 tall and 20 wide with two sleeves and a darker panel."""
    p = np.zeros((SIZE, SIZE), np.float32)
    p[0:28, 8:20] = 220        # body
    p[2:14, 4:8] = 180         # left sleeve
    p[2:14, 20:24] = 180       # right sleeve
    p[10:18, 11:17] = 120      # a panel
    p[0:3, 12:16] = 0          # neck opening
    return p


def photo_of(p: np.ndarray, factor: int = 12, canvas=(900, 520), at=(380, 70), background=(246, 246, 246),
             colour=(1.0, 1.0, 1.0), noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """`p` as a product photo: each pixel a factor x factor block, absorbing `colour` of the light."""
    big = np.kron(p, np.ones((factor, factor), np.float32)) / 255.0
    rows, cols = np.nonzero(big.any(axis=1))[0], np.nonzero(big.any(axis=0))[0]
    big = big[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    img = np.empty((canvas[1], canvas[0], 3), np.float32)
    img[:] = background
    x, y = at
    img[y:y + big.shape[0], x:x + big.shape[1]] *= 1.0 - big[..., None] * np.array(colour, np.float32)
    if noise:
        img += np.random.default_rng(seed).normal(0, noise, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def convert(array_or_image, fmt: str | None = None, tmp_path=None, **save):
    image = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    if fmt is None:
        return fashion_mnist_input(image)
    path = tmp_path / f"photo.{fmt.lower()}"
    image.save(path, fmt, **save)
    return load_photo(path).pixels


def expected() -> np.ndarray:
    p = pattern()
    return p * (255.0 / p.max())


def close(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def test_clean_photo_gives_back_the_pattern_exactly():
    out = convert(photo_of(pattern()))
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert close(out, expected()) < 1.5
    assert np.array_equal(out > 60, expected() > 60)   # same pixels garment, same place: trimmed and centred


def test_placement_size_and_canvas_do_not_matter():
    reference = convert(photo_of(pattern()))
    for factor, canvas, at in [(5, (400, 700), (20, 400)), (20, (1800, 700), (1300, 60)), (9, (300, 300), (0, 0))]:
        out = convert(photo_of(pattern(), factor, canvas, at))
        assert close(out, reference) < 4, (factor, canvas, at)
        cols = np.nonzero(out.max(axis=0) > 60)[0]
        assert abs((cols[0] + cols[-1]) / 2 - 13.5) <= 1    # centred across
        assert out[0].max() > 100 and out[27].max() > 100   # longest edge spans 28 pixels


def test_background_removed_whatever_its_level_noise_and_jpeg(tmp_path):
    for level, noise, fmt, q in [(232, 5.0, "JPEG", 75), (250, 3.0, "PNG", None), (215, 6.0, "JPEG", 90)]:
        photo = photo_of(pattern(), background=(level, level - 3, level + 2), noise=noise)
        out = convert(photo, fmt, tmp_path, **({"quality": q} if q else {}))
        outside = out[expected() == 0]
        assert np.percentile(outside, 95) < 20, (level, noise, fmt)   # background is black, as in Fashion-MNIST
        assert close(out, expected()) < 12, (level, noise, fmt)


def test_inversion_follows_the_background():
    dark_on_light = convert(photo_of(pattern()))
    assert dark_on_light[20, 14] > 150 and dark_on_light[0, 0] == 0
    light_on_dark = Image.fromarray(np.kron(pattern(), np.ones((4, 4))).astype(np.uint8))  # already Fashion-MNIST-like
    out = fashion_mnist_input(light_on_dark)
    assert close(out, expected()) < 3


def test_coloured_garment_becomes_the_grey_of_its_luminance():
    red = convert(photo_of(pattern(), colour=(0.2, 1.0, 1.0)))   # absorbs green and blue: a red garment
    blue = convert(photo_of(pattern(), colour=(1.0, 1.0, 0.3)))
    for out in (red, blue):
        assert close(out, expected()) < 3   # luminance is linear in what is absorbed, then stretched


def test_low_contrast_is_stretched():
    faint = convert(photo_of(pattern() * 0.12, background=(240, 240, 240), noise=1.0))
    assert faint.max() == 255 and close(faint, expected()) < 12


def test_a_soft_shadow_does_not_widen_the_garment():
    from scipy import ndimage

    photo = photo_of(pattern()).astype(np.float32)
    shade = np.zeros(photo.shape[:2], np.float32)
    shade[90:420, 420:700] = 1.0                                        # offset below-right of the garment
    shade = ndimage.gaussian_filter(shade, 25) * 0.12                   # up to 12% darker, soft edges
    shadowed = np.clip(photo * (1 - shade[..., None]), 0, 255).astype(np.uint8)
    assert close(convert(shadowed), expected()) < 6


def test_frames_and_borders_are_peeled_off():
    photo = photo_of(pattern())
    framed = np.pad(photo, ((10, 10), (10, 10), (0, 0)), constant_values=90)                    # a grey frame
    framed = np.pad(framed, ((25, 25), (4, 4), (0, 0)), constant_values=0)                       # a black border
    assert close(convert(framed), expected()) < 3


def test_transparency_is_a_white_background(tmp_path):
    alpha = (np.kron(pattern(), np.ones((10, 10))) > 0).astype(np.uint8) * 255
    rgb = np.clip(255 - np.kron(pattern(), np.ones((10, 10)))[..., None].repeat(3, 2), 0, 255).astype(np.uint8)
    rgb[alpha == 0] = np.random.default_rng(1).integers(0, 255, (int((alpha == 0).sum()), 3))   # junk under alpha 0
    rgba = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    assert close(convert(rgba, "PNG", tmp_path), expected()) < 3


def test_exif_rotation_is_applied(tmp_path):
    upright = Image.fromarray(photo_of(pattern()))
    reference = convert(upright, "JPEG", tmp_path, quality=92)
    for tag, turn in [(6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270), (3, Image.Transpose.ROTATE_180)]:
        exif = Image.Exif()
        exif[0x0112] = tag
        path = tmp_path / f"sideways{tag}.jpg"
        upright.transpose(turn).save(path, "JPEG", quality=92, exif=exif.tobytes())
        assert close(load_photo(path).pixels, reference) < 2, tag


def test_sixteen_bit_and_float_images_are_scaled_not_clipped(tmp_path):
    grey = photo_of(pattern())[..., 0].astype(np.float64)
    reference = convert(grey.astype(np.uint8))
    sixteen = Image.fromarray((grey * 257).astype(np.uint16))              # I;16, 0..65535
    assert close(convert(sixteen, "PNG", tmp_path), reference) < 2
    unit = Image.fromarray((grey / 255).astype(np.float32), "F")            # float 0..1
    result = to_fashion_mnist(open_photo(_save(unit, tmp_path / "unit.tif")))
    assert close(result.pixels, reference) < 2 and not result.warnings
    odd = Image.fromarray((grey * 40 - 5000).astype(np.float32), "F")       # float, no known range
    result = to_fashion_mnist(open_photo(_save(odd, tmp_path / "odd.tif")))
    assert close(result.pixels, reference) < 2 and any("stretched" in w for w in result.warnings)


def _save(image: Image.Image, path):
    image.save(path)
    return path


def test_blank_tiny_and_thin_images_are_answered_with_a_warning(tmp_path):
    for size, colour, words in [((300, 200), 250, "no garment"), ((1, 1), 0, "only 1x1"),
                                ((20000, 20), None, "longer than wide"), ((100000, 1), None, "longer than wide")]:
        if colour is None:
            image = Image.new("L", size, 255)
            image.paste(0, (size[0] // 4, 0, size[0] // 2, size[1]))
        else:
            image = Image.new("L", size, colour)
        path = tmp_path / f"odd{size[0]}x{size[1]}.png"
        image.save(path)
        result = load_photo(path)
        assert result.pixels.shape == (28, 28)
        assert any(words in w for w in result.warnings), (size, result.warnings)


def test_extreme_aspect_ratios_stay_small_in_memory(tmp_path):
    path = tmp_path / "line.png"
    Image.new("L", (100000, 1), 255).save(path)
    assert path.stat().st_size < 2000
    tracemalloc.start()
    load_photo(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 * 2**20, peak   # once 43 GiB: the square padding was done at full resolution


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height 8-bit grey pixels and holds a few bytes of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_hostile_files_are_one_line_errors(tmp_path):
    cases = {
        "empty.png": (b"", "empty file"),
        "notes.png": (b"this is text, not a picture\n", "not an image"),
        "bomb.png": (_png_header_only(60000, 60000), "decompression bomb"),        # PIL's own limit
        "wide.png": (_png_header_only(400000, 200), "decompression bomb"),          # ours, under PIL's error limit
        "cut.png": (None, "damaged"),
    }
    buffer = io.BytesIO()
    Image.fromarray(photo_of(pattern())).save(buffer, "PNG")
    cases["cut.png"] = (buffer.getvalue()[:len(buffer.getvalue()) // 2], "damaged")
    for name, (data, words) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(PhotoError) as error:
            load_photo(tmp_path / name)
        assert words in str(error.value) and "\n" not in str(error.value), (name, error.value)


def test_large_jpeg_is_decoded_at_reduced_scale(tmp_path):
    big = Image.fromarray(photo_of(pattern(), factor=60, canvas=(3600, 2000), at=(1500, 100)))
    path = tmp_path / "big.jpg"
    big.save(path, "JPEG", quality=85)
    photo = open_photo(path)
    assert max(photo.rgb.shape[:2]) <= 1024 and photo.scale > 3
    assert close(to_fashion_mnist(photo).pixels, expected()) < 4


def test_generator_is_deterministic(tmp_path):
    first = generate(SAMPLE_TEST_CSV, tmp_path / "a", 12, seed=5)
    second = generate(SAMPLE_TEST_CSV, tmp_path / "b", 12, seed=5)
    other = generate(SAMPLE_TEST_CSV, tmp_path / "c", 12, seed=6)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert len(names) == 13 and first.read_text() == second.read_text()
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert first.read_text() != other.read_text()
    # a photo depends on (seed, row) only: made alone it is the same file
    numbers, _, pixels = read_rows(SAMPLE_TEST_CSV, 12, seed=5)
    data, spec = make_photo(pixels[3], 5, numbers[3])
    name = f"photo_{numbers[3] + 1:05d}.{'jpg' if spec.fmt == 'JPEG' else 'png'}"
    assert (tmp_path / "a" / name).read_bytes() == data
    formats = {p.suffix for p in (tmp_path / "a").iterdir()}
    assert {".png", ".jpg"} <= formats
    sizes = {Image.open(tmp_path / "a" / n).size for n in names if n != "manifest.csv"}
    assert len(sizes) > 6 and all(w != h for w, h in sizes)   # sizes vary, canvases are not square
