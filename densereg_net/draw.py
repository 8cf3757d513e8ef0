"""Pictures with Pillow alone: CED curves, IUV colourings, a sheet of predictions beside the truth."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)]

# a visible colour for each part label 0..8 (0 background)
PART_COLOURS = np.array([(0, 0, 0), (31, 119, 180), (255, 187, 120), (23, 190, 207), (255, 152, 150),
                         (214, 39, 40), (148, 103, 189), (140, 86, 75), (127, 127, 127)], np.uint8)


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
        lx, ly = px(xmax * 0.55, 0.25 - 0.07 * i)
        d.line([(lx, ly + 6), (lx + 20, ly + 6)], fill=c, width=3)
        d.text((lx + 25, ly), name, fill="black", font=font)
    img.save(path)


def iuv_colour(uv: np.ndarray, parts: np.ndarray) -> np.ndarray:
    """Visible colouring: uv (2, S, S), parts (S, S) -> (S, S, 3) uint8 (R = u, G = v, B = part)."""
    fg = parts > 0
    out = np.zeros((*parts.shape, 3), np.uint8)
    out[..., 0] = np.clip(uv[0] * 255, 0, 255).round() * fg
    out[..., 1] = np.clip(uv[1] * 255, 0, 255).round() * fg
    out[..., 2] = (parts.astype(np.int64) * 28).clip(0, 255)
    return out


def iuv_png(uv: np.ndarray, parts: np.ndarray) -> np.ndarray:
    """The IUV image: uv (2, S, S), parts (S, S) -> (S, S, 3) uint8 (part index, 255 u, 255 v)."""
    fg = parts > 0
    out = np.zeros((*parts.shape, 3), np.uint8)
    out[..., 0] = parts
    out[..., 1] = np.clip(uv[0] * 255, 0, 255).round() * fg
    out[..., 2] = np.clip(uv[1] * 255, 0, 255).round() * fg
    return out


def draw_points(img: Image.Image, pts: np.ndarray, colour, r: float = 1.5) -> None:
    d = ImageDraw.Draw(img)
    for x, y in pts:
        d.ellipse([x - r, y - r, x + r, y + r], fill=colour)


def sheet(rows: list[dict], path, scale: int = 1) -> None:
    """rows: [{"image" (S, S, 3) uint8, "true_uv", "true_parts", "pred_uv", "pred_parts",
    "true_lm", "pred_lm"}] -> a PNG with columns image+landmarks | true IUV | predicted IUV | parts."""
    if not rows:
        return
    S = rows[0]["image"].shape[0]
    cols = 5
    out = Image.new("RGB", (cols * S, len(rows) * S), "white")
    for r, row in enumerate(rows):
        im = Image.fromarray(row["image"])
        draw_points(im, row["true_lm"], (0, 255, 0))
        draw_points(im, row["pred_lm"], (255, 0, 0))
        tiles = [im, Image.fromarray(iuv_colour(row["true_uv"], row["true_parts"])),
                 Image.fromarray(iuv_colour(row["pred_uv"], row["pred_parts"])),
                 Image.fromarray(PART_COLOURS[row["true_parts"]]), Image.fromarray(PART_COLOURS[row["pred_parts"]])]
        for c, t in enumerate(tiles):
            out.paste(t, (c * S, r * S))
    if scale != 1:
        out = out.resize((out.width * scale, out.height * scale), Image.NEAREST)
    out.save(path)
