"""Pictures of dense labels: IUV images, overlays with iso-U-V contours, part colours and landmarks.

Convention: IUV image (DensePose style)
    (H, W, 3) uint8: channel 0 the part index (0 background, 1..8), channel 1 round(255 u), channel 2
    round(255 v); all 0 on background.
"""

from __future__ import annotations

import numpy as np

#: RGB colour of each part label (0 = background, unused), chosen to be told apart at a glance.
PART_COLOURS = np.array(
    [
        (0, 0, 0),
        (31, 119, 180),  # right brow
        (255, 127, 14),  # left brow
        (23, 190, 207),  # right eye
        (188, 189, 34),  # left eye
        (214, 39, 40),  # nose
        (148, 103, 189),  # upper lip
        (227, 119, 194),  # lower lip
        (127, 127, 127),  # rest of face
    ],
    dtype=np.uint8,
)


def iuv_image(uv: np.ndarray, parts: np.ndarray) -> np.ndarray:
    """uv (H, W, 2) float, parts (H, W) uint8 -> (H, W, 3) uint8 IUV image (see the Convention)."""
    out = np.zeros(parts.shape + (3,), dtype=np.uint8)
    fg = parts > 0
    out[..., 0] = parts
    out[..., 1:][fg] = np.clip(np.round(uv[fg].astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    return out


def iso_uv_lines(uv: np.ndarray, parts: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) bool masks of the iso-u and iso-v lines: pixels whose bin differs from their right or
    lower foreground neighbour's (the bin borders at multiples of 1/k)."""
    fg = parts > 0
    lines = []
    for axis in range(2):  # the quantized-regression bins: min(floor(k u), k - 1)
        b = np.where(fg, np.minimum(np.floor(uv[..., axis].astype(np.float64) * k), k - 1), -1)
        edge = np.zeros_like(fg)
        edge[:, 1:] |= (b[:, 1:] != b[:, :-1]) & fg[:, 1:] & fg[:, :-1]
        edge[1:, :] |= (b[1:, :] != b[:-1, :]) & fg[1:, :] & fg[:-1, :]
        lines.append(edge)
    return lines[0], lines[1]


def overlay(
    image: np.ndarray,
    uv: np.ndarray,
    parts: np.ndarray,
    landmarks: np.ndarray | None = None,
    fitted: np.ndarray | None = None,
    k: int = 10,
    alpha: float = 0.35,
) -> np.ndarray:
    """The image with part colours, iso-u (red) / iso-v (yellow) lines, annotated landmarks (green
    dots) and fitted landmarks (magenta crosses). image (H, W, 3) uint8 -> (H, W, 3) uint8."""
    from PIL import Image, ImageDraw

    out = image.astype(np.float64).copy()
    fg = parts > 0
    out[fg] = (1 - alpha) * out[fg] + alpha * PART_COLOURS[parts[fg]]
    iso_u, iso_v = iso_uv_lines(uv, parts, k)
    out[iso_u] = (255, 40, 40)
    out[iso_v] = (255, 230, 0)
    pil = Image.fromarray(out.astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    r = max(1.0, min(image.shape[:2]) / 250.0)
    if fitted is not None:
        for x, y in fitted:
            draw.line([(x - r, y - r), (x + r, y + r)], fill=(255, 0, 255))
            draw.line([(x - r, y + r), (x + r, y - r)], fill=(255, 0, 255))
    if landmarks is not None:
        for x, y in landmarks:
            draw.ellipse([(x - r, y - r), (x + r, y + r)], fill=(0, 255, 0))
    return np.asarray(pil)


def uv_colour(uv: np.ndarray, parts: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 picture of U-V: red = u, green = v, black background."""
    out = np.zeros(parts.shape + (3,), dtype=np.uint8)
    fg = parts > 0
    out[fg, 0] = np.round(255 * uv[fg, 0]).astype(np.uint8)
    out[fg, 1] = np.round(255 * uv[fg, 1]).astype(np.uint8)
    out[fg, 2] = 96
    return out
