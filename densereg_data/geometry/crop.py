"""The one crop rule: the square face crop a build writes and a network reads.

Convention: crop
    A square of side ``max(w, h) * (1 + 2 * margin)`` centred on the centre of a box (the landmarks'
    bounding box, or a detector's box) of width w and height h, in continuous image coordinates (pixel
    centres at integers, the image's top-left corner at (-0.5, -0.5)), resampled to S x S pixels:
    ``crop_xy = a * (xy - corner) - 0.5`` with ``a = S / side`` and ``corner`` the square's top-left
    *edge*, so that pixel centres stay at integers in both images. `crop_from_box` returns this map as
    a (2, 3) float64 affine (``crop_from_image``). Pixels outside the source image are black.
"""

from __future__ import annotations

import math

import numpy as np

from densereg_data.conventions import LANDMARK_LIMIT_PX
from densereg_data.errors import ImageFileError, ShapeError
from densereg_data.geometry.affine import compose_affine, invert_affine, reduction_affine

__all__ = ["DEFAULT_MARGIN", "crop_from_box", "crop_from_landmarks", "warp_crop"]

DEFAULT_MARGIN = 0.25


def crop_from_box(box, size: int, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """(2, 3) float64 ``crop_from_image`` of the square crop around `box` (x0, y0, x1, y1) pixels.

    Raises ShapeError for a box of no area, or with coordinates that are not finite or farther than
    `LANDMARK_LIMIT_PX` from the image origin.
    """
    x0, y0, x1, y1 = (float(b) for b in box)
    if not all(math.isfinite(b) and abs(b) <= LANDMARK_LIMIT_PX for b in (x0, y0, x1, y1)):
        raise ShapeError(f"crop box must be finite and within {LANDMARK_LIMIT_PX:g} pixels of the image origin, "
                         f"got {x0}, {y0}, {x1}, {y1}")
    if not (x1 > x0 and y1 > y0):
        raise ShapeError(f"crop box must have x1 > x0 and y1 > y0 (an area to crop), got {x0}, {y0}, {x1}, {y1}")
    side = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * float(margin))
    if not (math.isfinite(side) and side > 0):
        raise ShapeError(f"crop box {x0}, {y0}, {x1}, {y1} with margin {margin} gives no usable square")
    a = size / side
    corner_x, corner_y = (x0 + x1) / 2.0 - side / 2.0, (y0 + y1) / 2.0 - side / 2.0  # the square's top-left edge
    return np.array([[a, 0.0, -a * corner_x - 0.5], [0.0, a, -a * corner_y - 0.5]])


def crop_from_landmarks(landmarks: np.ndarray, size: int, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """(2, 3) float64 ``crop_from_image`` of the square crop around `landmarks` (n, 2) (x, y) pixels."""
    pts = np.asarray(landmarks, dtype=np.float64)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    if not float(max(hi - lo)) > 0:
        raise ShapeError("the landmarks span no area; cannot place a crop")
    return crop_from_box((lo[0], lo[1], hi[0], hi[1]), size, margin)


def warp_crop(image: np.ndarray, crop_from_image: np.ndarray, size: int) -> np.ndarray:
    """Resample `image` (H, W, 3) uint8 into the (size, size, 3) uint8 crop.

    When shrinking by a factor >= 2, factor x factor blocks are averaged first (Pillow ``reduce``),
    then Pillow's bilinear AFFINE resampling; outside the image is black.
    """
    from PIL import Image

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ImageFileError(f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    a = crop_from_image[0, 0]
    pil = Image.fromarray(np.ascontiguousarray(image))
    factor = max(1, int(np.floor(1.0 / a))) if a < 1.0 else 1
    affine = crop_from_image
    if factor > 1:  # average factor x factor blocks first: reduced_xy = (xy + 0.5) / factor - 0.5
        pil = pil.reduce(factor)
        affine = compose_affine(crop_from_image, invert_affine(reduction_affine(factor)))
    image_from_crop = invert_affine(affine)
    lin, t = image_from_crop[:, :2], image_from_crop[:, 2]
    # Pillow samples in pixel-edge coordinates: in_edge = M @ out_edge + c
    c = t + 0.5 - lin @ np.array([0.5, 0.5])
    coeffs = (lin[0, 0], lin[0, 1], c[0], lin[1, 0], lin[1, 1], c[1])
    out = pil.transform((size, size), Image.AFFINE, coeffs, resample=Image.BILINEAR)
    return np.asarray(out, dtype=np.uint8)
