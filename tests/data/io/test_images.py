"""Image reading: every mode becomes (H, W, 3) uint8 RGB; reduced decoding keeps coordinates exact."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from densereg_data.errors import ImageFileError, ShapeError
from densereg_data.io.images import image_size, read_image, read_image_reduced, write_png


@pytest.fixture
def rgb():
    """A non-square (H, W) = (37, 53) random RGB image."""
    return np.random.default_rng(0).integers(0, 256, size=(37, 53, 3), dtype=np.uint8)


def test_png_round_trip_and_point_pin(tmp_path, rgb):
    rgb = rgb.copy()
    rgb[1, 3] = (255, 0, 0)  # the point (x=3, y=1) lands in image[1, 3]
    path = write_png(tmp_path / "with space.png", rgb)
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (37, 53, 3)
    assert np.array_equal(out, rgb)
    assert image_size(path) == (37, 53)


def test_ppm(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "a.ppm")
    assert np.array_equal(read_image(tmp_path / "a.ppm"), rgb)


def test_jpeg_close_to_source(tmp_path):
    smooth = np.zeros((40, 60, 3), np.uint8)
    smooth[..., 0] = np.linspace(0, 255, 60)[None, :]
    smooth[..., 1] = 128
    Image.fromarray(smooth).save(tmp_path / "a.jpg", quality=95)
    out = read_image(tmp_path / "a.jpg")
    assert out.shape == (40, 60, 3)
    assert np.abs(out.astype(int) - smooth).mean() < 3


def test_grayscale_is_replicated(tmp_path, rgb):
    gray = rgb[..., 0]
    Image.fromarray(gray).save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (37, 53, 3)
    assert all(np.array_equal(out[..., c], gray) for c in range(3))


def test_rgba_alpha_is_dropped(tmp_path, rgb):
    alpha = np.zeros((37, 53, 1), np.uint8)  # fully transparent: colours must survive as stored
    Image.fromarray(np.concatenate([rgb, alpha], axis=2)).save(tmp_path / "a.png")
    assert np.array_equal(read_image(tmp_path / "a.png"), rgb)
    Image.fromarray(np.concatenate([rgb[..., :1], alpha], axis=2)[..., :2], mode="LA").save(tmp_path / "la.png")
    assert np.array_equal(read_image(tmp_path / "la.png")[..., 1], rgb[..., 0])


def test_16_bit_png_is_scaled(tmp_path):
    values = np.array([[0, 257, 32896, 65535, 65407]], dtype=np.uint16)  # 65407 = 254.5 * 257 rounds up
    Image.fromarray(values).save(tmp_path / "d.png")
    out = read_image(tmp_path / "d.png")
    assert out[0, :, 0].tolist() == [0, 1, 128, 255, 255]
    assert out.shape == (1, 5, 3)


def test_palette(tmp_path, rgb):
    im = Image.fromarray(rgb).quantize(colors=16)
    im.save(tmp_path / "p.png")
    expect = np.asarray(im.convert("RGB"))
    assert np.array_equal(read_image(tmp_path / "p.png"), expect)


def test_bilevel(tmp_path):
    im = Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).convert("1")
    im.save(tmp_path / "b.png")
    assert read_image(tmp_path / "b.png")[..., 2].tolist() == [[0, 255], [255, 0]]


@pytest.mark.parametrize(
    "name, content, pattern",
    [
        ("missing.jpg", None, r"image file not found: .*missing.jpg"),
        ("text.jpg", b"this is not an image", r"not an image .*text.jpg"),
        ("empty.png", b"", r"not an image .*empty.png"),
    ],
)
def test_bad_files(tmp_path, name, content, pattern):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageFileError, match=pattern):
        read_image(tmp_path / name)


def test_truncated_jpeg_and_png(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "t.jpg")
    Image.fromarray(rgb).save(tmp_path / "t.png")
    for name in ("t.jpg", "t.png"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
        with pytest.raises(ImageFileError, match=rf"corrupt or truncated image .*{name}"):
            read_image(tmp_path / name)


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(ImageFileError, match="is a directory"):
        read_image(tmp_path)


def test_write_png_rejects_float(tmp_path):
    with pytest.raises(ShapeError, match=r"uint8, got \(2, 2, 3\) float64"):
        write_png(tmp_path / "x.png", np.zeros((2, 2, 3)))


def _blob(h, w, cx, cy):
    yy, xx = np.mgrid[0:h, 0:w]
    g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 12.0**2))
    return np.repeat((g * 255).round().astype(np.uint8)[..., None], 3, axis=2)


def _centroid(img):
    g = img[..., 0].astype(np.float64)
    yy, xx = np.mgrid[0 : g.shape[0], 0 : g.shape[1]]
    return np.array([(g * xx).sum() / g.sum(), (g * yy).sum() / g.sum()])


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
@pytest.mark.parametrize("min_scale, factor", [(1.0, 1), (0.5, 2), (0.3, 2), (0.25, 4), (0.01, 8)])
def test_reduced_decoding_keeps_coordinates(tmp_path, suffix, min_scale, factor):
    h, w, centre = 203, 301, np.array([150.3, 97.6])  # sizes not divisible by 8
    path = tmp_path / f"blob{suffix}"
    Image.fromarray(_blob(h, w, *centre)).save(path, **({"quality": 95} if suffix == ".jpg" else {}))
    red = read_image_reduced(path, min_scale=min_scale)
    assert red.factor == factor and red.source_size == (h, w)
    assert red.image.shape == (-(-h // factor), -(-w // factor), 3)
    expect = red.reduced_from_image @ np.append(centre, 1.0)
    np.testing.assert_allclose(_centroid(red.image), expect, atol=0.05)


def test_reduced_decoding_tiny_image(tmp_path):
    write_png(tmp_path / "tiny.png", np.zeros((3, 5, 3), np.uint8))
    red = read_image_reduced(tmp_path / "tiny.png", min_scale=0.01)
    assert red.factor == 2 and red.image.shape == (2, 3, 3)


def test_reduced_decoding_never_upsamples(tmp_path):
    write_png(tmp_path / "small.png", np.zeros((6, 8, 3), np.uint8))
    red = read_image_reduced(tmp_path / "small.png", min_scale=3.0)  # the caller would need upsampling
    assert red.factor == 1 and red.image.shape == (6, 8, 3)
