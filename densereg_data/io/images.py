"""Image files in and out, with Pillow: always ``(H, W, 3)`` uint8 RGB in memory.

Convention: colour and depth
    Grayscale (L, 1, I;16, I) is replicated to three channels. Alpha (RGBA, LA, palette transparency)
    is *dropped*: the colour values are kept as stored, not composited on any background. 16-bit
    samples are scaled to 8 bits by ``round(v * 255 / 65535)`` (16-bit RGB PNGs are reduced by Pillow
    itself to their high byte). CMYK and YCbCr are converted to RGB. EXIF orientation is *not* applied:
    landmarks are annotated on the stored pixel grid.

Convention: reduced decoding
    `read_image_reduced` may decode at ``1/k`` of full size (k = 1, 2, 4 or 8; JPEG with the DCT scaling
    of ``Image.draft``, other formats with ``Image.reduce``, both box-like averages of k x k blocks).
    Reduced pixel ``i`` covers full pixels ``k i .. k i + k - 1``, so with pixel centres at integers
    ``reduced_xy = (full_xy + 0.5) / k - 0.5`` (`ReducedImage.reduced_from_image` is that affine map).

Every image file is untrusted: Pillow's decompression-bomb limit stays on, and any failure becomes an
`ImageFileError` naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from densereg_data.geometry.affine import reduction_affine
from densereg_data.errors import ImageFileError, ShapeError
from densereg_data.io.untrusted import regular_file

__all__ = ["IMAGE_SUFFIXES", "ReducedImage", "read_image", "read_image_reduced", "image_size", "write_png"]

#: File suffixes treated as images by the dataset scanners (lower case).
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".gif", ".webp")

_REDUCTIONS = (8, 4, 2, 1)
#: The memory bound of decoding: images with more pixels are refused from their header (40 MP is
#: 120 MB as RGB; full-resolution labels of such an image take a few GB).
MAX_IMAGE_PIXELS = 40_000_000
#: Image files larger than this are refused unread.
MAX_IMAGE_BYTES = 512 * 2**20


@dataclass(frozen=True)
class ReducedImage:
    """An image decoded at ``1 / factor`` of its stored size.

    image: (h, w, 3) uint8 RGB, h = ceil(H / factor), w = ceil(W / factor).
    factor: the integer reduction k (1 = full size).
    source_size: (H, W) of the stored image.
    """

    image: np.ndarray
    factor: int
    source_size: tuple[int, int]

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ShapeError(f"image must be (h, w, 3) uint8, got {self.image.shape} {self.image.dtype}")
        if self.factor not in _REDUCTIONS:
            raise ShapeError(f"factor must be one of {sorted(_REDUCTIONS)}, got {self.factor}")

    @property
    def scale(self) -> float:
        """Reduced pixels per source pixel, ``1 / factor``."""
        return 1.0 / self.factor

    @property
    def reduced_from_image(self) -> np.ndarray:
        """(2, 3) float64 affine: ``reduced_xy = A @ [x, y, 1]`` for source-image (x, y)."""
        return reduction_affine(self.factor)


def _open(path: Path):
    """Open (header only) a regular image file of at most MAX_IMAGE_BYTES and MAX_IMAGE_PIXELS."""
    from PIL import Image, UnidentifiedImageError

    regular_file(path, "image file", ImageFileError, MAX_IMAGE_BYTES)
    try:
        im = Image.open(path)
    except UnidentifiedImageError:
        raise ImageFileError(f"not an image (or an unsupported format): {path}") from None
    except Image.DecompressionBombError as exc:
        raise ImageFileError(f"image too large to decode safely ({exc}): {path}") from None
    except OSError as exc:
        raise ImageFileError(f"cannot read image {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # Pillow raises ValueError, SyntaxError, struct.error on hostile headers and chunks
        raise ImageFileError(f"corrupt image header ({type(exc).__name__}: {str(exc)[:80]}): {path}") from None
    w, h = im.size
    if w < 1 or h < 1 or w * h > MAX_IMAGE_PIXELS:
        im.close()
        raise ImageFileError(f"image of {w}x{h} pixels is empty or larger than the {MAX_IMAGE_PIXELS:,} pixels "
                             f"densereg decodes: {path}")
    return im


def _to_rgb(im, path: Path) -> np.ndarray:
    """A loaded PIL image -> (H, W, 3) uint8 RGB, following the module's colour convention."""
    mode = im.mode
    if mode == "RGB":
        arr = np.asarray(im)
    elif mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        raw = np.asarray(im).astype(np.int64)
        if raw.size and (raw.min() < 0 or raw.max() > 65535):
            raise ImageFileError(f"unsupported 32-bit integer image (values outside 0..65535): {path}")
        gray = ((raw * 255 + 32767) // 65535).astype(np.uint8)
        arr = np.repeat(gray[:, :, None], 3, axis=2)
    elif mode == "F":
        gray = np.clip(np.rint(np.asarray(im, dtype=np.float64)), 0, 255).astype(np.uint8)
        arr = np.repeat(gray[:, :, None], 3, axis=2)
    elif mode in ("L", "1", "LA", "La"):
        gray = np.asarray(im.convert("L") if mode != "L" else im)
        arr = np.repeat(gray[:, :, None], 3, axis=2)
    elif mode in ("P", "PA"):
        arr = np.asarray(im.convert("RGBA"))[:, :, :3]
    else:  # RGBA, RGBa, RGBX, CMYK, YCbCr, LAB, HSV
        arr = np.asarray(im.convert("RGB"))
    return np.ascontiguousarray(arr, dtype=np.uint8)


def _decode(path: str | os.PathLike, min_scale: float | None) -> ReducedImage:
    p = Path(path)
    im = _open(p)
    try:
        with im:
            full = (im.size[1], im.size[0])
            factor = 1
            if min_scale is not None:
                if not 0 < min_scale:
                    raise ShapeError(f"min_scale must be > 0, got {min_scale}")
                factor = next((k for k in _REDUCTIONS if 1.0 / k >= min_scale), 1)
            while factor > 1 and min(full) // factor < 1:
                factor //= 2
            drafted = None
            if factor > 1 and im.format == "JPEG":
                # Pillow picks the largest 1/s (s in 8, 4, 2, 1) with s <= W // want: ask for floor sizes.
                drafted = im.draft(im.mode, (full[1] // factor, full[0] // factor))
            if drafted is not None:
                factor = round(full[1] / drafted[1][2])
                if im.size != (-(-full[1] // factor), -(-full[0] // factor)):
                    raise ImageFileError(f"unexpected reduced JPEG size {im.size} for {full[::-1]}: {p}")
                im.load()
                rgb = _to_rgb(im, p)
            else:
                im.load()
                if factor > 1:
                    if im.mode.startswith("I;16"):
                        im = im.convert("I")
                    elif im.mode not in ("RGB", "L", "RGBA", "LA", "I", "F"):
                        im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
                    im = im.reduce(factor)
                rgb = _to_rgb(im, p)
    except ImageFileError:
        raise
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, struct.error on corrupt data
        from PIL import Image

        if isinstance(exc, Image.DecompressionBombError):
            raise ImageFileError(f"image too large to decode safely: {p}") from None
        raise ImageFileError(f"corrupt or truncated image ({type(exc).__name__}: {exc}): {p}") from None
    return ReducedImage(rgb, factor, full)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file (jpg, png, ppm, ...) as (H, W, 3) uint8 RGB at full size.

    Raises `ImageFileError` naming the file when it is missing, corrupt or not an image.
    """
    return _decode(path, None).image


def read_image_reduced(path: str | os.PathLike, *, min_scale: float) -> ReducedImage:
    """Decode at the smallest size 1/k (k in 1, 2, 4, 8) with ``1 / k >= min_scale``.

    Use it when only a downscaled crop is needed: with a crop of side ``c`` source pixels resampled to
    ``S`` pixels, ``min_scale = S / c`` keeps at least one decoded pixel per output pixel. JPEGs are
    decoded directly at the reduced size (fast); other formats are decoded, then box-reduced.
    Convention: see the module docstring (`ReducedImage.reduced_from_image`).
    """
    return _decode(path, min_scale)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of an image file from its header, without decoding the pixels."""
    p = Path(path)
    im = _open(p)
    with im:
        return (im.size[1], im.size[0])


def write_png(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write (H, W, 3) or (H, W, 4) or (H, W) uint8 as a PNG file (parent folders must exist)."""
    from PIL import Image

    arr = np.asarray(array)
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ShapeError(f"write_png needs (H, W), (H, W, 3) or (H, W, 4) uint8, got {arr.shape} {arr.dtype}")
    p = Path(path)
    Image.fromarray(np.ascontiguousarray(arr)).save(p, format="PNG")
    return p
