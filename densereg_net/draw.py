"""The network's pictures: CED curves, a sheet of predictions beside the truth, a prediction overlay.

Part colours, U-V colourings and the overlay are `densereg_data.draw`'s (the one palette both halves
use); this module only lays them out. Pillow and numpy only.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from densereg_data.draw import PART_COLOURS, overlay, uv_colour
from densereg_data.geometry.affine import apply_affine, compose_affine, invert_affine
from densereg_data.geometry.crop import warp_crop

#: Line colours of the CED curves.
COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)]


def draw_curves(curves: dict, path, xmax: float, xlabel: str, title: str, size=(640, 480)) -> None:
    """Plot {name: (x (n,), y (n,))} with y in [0, 1] over [0, xmax] and save a PNG."""
    W, H = size
    left, right, top, bottom = 60, 20, 30, 50
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()

    def px(x, y):
        return left + x / xmax * (W - left - right), H - bottom - y * (H - top - bottom)

    for i in range(6):  # grid and ticks
        gx, gy = xmax * i / 5, i / 5
        d.line([px(gx, 0), px(gx, 1)], fill=(225, 225, 225))
        d.line([px(0, gy), px(xmax, gy)], fill=(225, 225, 225))
        x, y = px(gx, 0)
        d.text((x - 12, y + 5), f"{gx:.3g}", fill="black", font=font)
        x, y = px(0, gy)
        d.text((x - 30, y - 6), f"{gy:.1f}", fill="black", font=font)
    d.rectangle([px(0, 1), px(xmax, 0)], outline="black")
    d.text((W / 2 - 40, H - 20), xlabel, fill="black", font=font)
    d.text((left, 8), title, fill="black", font=font)
    for i, (name, (x, y)) in enumerate(curves.items()):
        c = COLOURS[i % len(COLOURS)]
        pts = [px(a, b) for a, b in zip(x, y) if a <= xmax]
        if len(pts) > 1:
            d.line(pts, fill=c, width=2)
    for i, name in enumerate(curves):  # the legend over the curves, on white: it never hides behind them
        c = COLOURS[i % len(COLOURS)]
        lx, ly = px(xmax * 0.03, 0.95 - 0.07 * i)
        d.rectangle(d.textbbox((lx + 25, ly), name, font=font), fill="white")
        d.line([(lx, ly + 6), (lx + 20, ly + 6)], fill=c, width=3)
        d.text((lx + 25, ly), name, fill="black", font=font)
    img.save(path)


def draw_points(img: Image.Image, pts: np.ndarray, colour, r: float = 1.5, outline=None) -> None:
    """Filled dots of radius r at pts (n, 2) (x, y) pixels on a PIL image (ringed in `outline`), in place."""
    d = ImageDraw.Draw(img)
    for x, y in pts:
        d.ellipse([x - r, y - r, x + r, y + r], fill=colour, outline=outline)


def sheet(rows: list[dict], path, scale: int = 1) -> None:
    """rows: [{"image" (S, S, 3) uint8, "true_uv"/"pred_uv" (2, S, S) float, "true_parts"/"pred_parts"
    (S, S) int, "true_lm"/"pred_lm" (68, 2) (x, y)}] -> a PNG with columns image + landmarks (true
    green, predicted red) | true U-V | predicted U-V | true parts | predicted parts."""
    if not rows:
        return
    S = rows[0]["image"].shape[0]
    cols = 5
    out = Image.new("RGB", (cols * S, len(rows) * S), "white")
    for r, row in enumerate(rows):
        im = Image.fromarray(row["image"])
        draw_points(im, row["true_lm"], (0, 255, 0))
        draw_points(im, row["pred_lm"], (255, 0, 0))
        tiles = [im, Image.fromarray(uv_colour(row["true_uv"].transpose(1, 2, 0), row["true_parts"])),
                 Image.fromarray(uv_colour(row["pred_uv"].transpose(1, 2, 0), row["pred_parts"])),
                 Image.fromarray(PART_COLOURS[row["true_parts"]]), Image.fromarray(PART_COLOURS[row["pred_parts"]])]
        for c, t in enumerate(tiles):
            out.paste(t, (c * S, r * S))
    if scale != 1:
        out = out.resize((out.width * scale, out.height * scale), Image.NEAREST)
    out.save(path)


def labels_to_image(uv: np.ndarray, parts: np.ndarray, crop_from_image: np.ndarray,
                    image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Crop labels uv (S, S, 2), parts (S, S) -> image-frame (H, W, 2) float32 and (H, W) uint8:
    each image pixel takes the label of the nearest crop pixel centre (0 outside the crop)."""
    H, W = image_hw
    S = parts.shape[0]
    out_uv, out_parts = np.zeros((H, W, 2), np.float32), np.zeros((H, W), np.uint8)
    corners = apply_affine(invert_affine(crop_from_image), np.array([[-0.5, -0.5], [S - 0.5, -0.5],
                                                                     [-0.5, S - 0.5], [S - 0.5, S - 0.5]]))
    (x0, y0), (x1, y1) = np.floor(corners.min(0)).astype(int), np.ceil(corners.max(0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, W - 1), min(y1, H - 1)
    if x1 < x0 or y1 < y0:
        return out_uv, out_parts
    rows, cols = np.mgrid[y0:y1 + 1, x0:x1 + 1]
    c = np.rint(apply_affine(crop_from_image, np.stack([cols.ravel(), rows.ravel()], -1).astype(np.float64))).astype(int)
    inside = ((c >= 0) & (c < S)).all(1)
    r, q = rows.ravel()[inside], cols.ravel()[inside]
    out_uv[r, q] = uv[c[inside, 1], c[inside, 0]]
    out_parts[r, q] = parts[c[inside, 1], c[inside, 0]]
    return out_uv, out_parts


#: Side (pixels) the face panel of `prediction_overlay` is at least drawn at.
OVERLAY_ZOOM = 384


def prediction_overlay(image: np.ndarray, uv: np.ndarray, parts: np.ndarray, crop_from_image: np.ndarray,
                       landmarks: np.ndarray, k: int = 10) -> np.ndarray:
    """A picture of one prediction, readable however small the face is in the photo.

    Two panels side by side, both Z pixels tall (Z = the crop size S times the smallest integer that
    reaches `OVERLAY_ZOOM`): on the left the whole image (H, W, 3) uint8, scaled to height Z (and to
    width at most 3 Z), with the crop square outlined; on the right the crop square resampled from the
    source image at Z x Z, with the predicted parts and iso-U-V lines (`densereg_data.draw.overlay`; crop
    labels uv (S, S, 2), parts (S, S), each spread over its (Z / S)^2 zoom pixels) and the predicted
    landmarks (68, 2) image pixels as dots scaled to the face (radius Z / 128). -> (Z, w + 8 + Z, 3) uint8.
    """
    S = parts.shape[0]
    n = -(-OVERLAY_ZOOM // S)
    Z = n * S
    zoom_from_crop = np.array([[n, 0.0, 0.5 * n - 0.5], [0.0, n, 0.5 * n - 0.5]])  # pixel centres stay centres
    zoom_from_image = compose_affine(zoom_from_crop, crop_from_image)
    face = overlay(warp_crop(image, zoom_from_image, Z), np.repeat(np.repeat(uv, n, 0), n, 1),
                   np.repeat(np.repeat(parts, n, 0), n, 1), k=k)
    face_img = Image.fromarray(face)
    draw_points(face_img, apply_affine(zoom_from_image, landmarks), (0, 255, 0), r=Z / 128, outline=(0, 0, 0))

    H, W = image.shape[:2]
    scale = min(Z / H, 3 * Z / W)
    w, h = max(1, round(W * scale)), max(1, round(H * scale))
    whole = Image.fromarray(image).resize((w, h), Image.BILINEAR)
    corners = apply_affine(invert_affine(crop_from_image), np.array([[-0.5, -0.5], [S - 0.5, S - 0.5]]))
    (x0, y0), (x1, y1) = (corners + 0.5) * scale - 0.5
    ImageDraw.Draw(whole).rectangle([x0, y0, x1, y1], outline=(0, 255, 0), width=max(2, Z // 192))

    out = Image.new("RGB", (w + 8 + Z, Z), (255, 255, 255))
    out.paste(whole, (0, (Z - h) // 2))
    out.paste(face_img, (w + 8, 0))
    return np.asarray(out)
