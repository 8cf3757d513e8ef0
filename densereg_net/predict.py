"""`densereg-net predict`: one image + (landmarks or a box) -> IUV PNG, overlay, 68 landmarks (.pts).

Convention: the face crop (matches the shard builder)
    A square of side ``max(w, h) * (1 + 2 * margin)`` centred on the centre of the landmarks'
    (or the box's) bounding box, in continuous image coordinates (pixel centres at integers, the
    image's top-left corner at (-0.5, -0.5)), resampled bilinearly to S x S pixels:
    ``crop_xy = (xy - (c - side / 2)) * S / side - 0.5`` (`crop_from_image`), box-prefiltered when
    shrinking (`crop_image`). margin and S come from the checkpoint (the shards' config.json:
    ``margin``, ``size``). Identical to densereg_data.face.labeller.crop_from_image / warp_crop (a test pins it).

Convention: .pts
    1-based on disk ("1 1" is the pixel (0, 0)), 0-based (x, y) in memory.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from densereg_net.checkpoint import load_checkpoint, model_from_checkpoint
from densereg_net.conventions import PTS_ORIGIN
from densereg_net.draw import draw_points, iuv_colour, iuv_png
from densereg_net.errors import NetInputError
from densereg_net.metrics import landmarks_from_uv
from densereg_net.train import resolve_device

log = logging.getLogger(__name__)


def read_pts(path) -> np.ndarray:
    """A .pts file -> (n, 2) float64 (x, y), 0-based."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise NetInputError(f"cannot read landmark file {path}: {exc}") from None
    try:
        start = next(i for i, ln in enumerate(lines) if ln.strip() == "{") + 1
        end = next(i for i, ln in enumerate(lines) if ln.strip() == "}")
        pts = np.array([[float(t) for t in ln.split()] for ln in lines[start:end] if ln.strip()], dtype=np.float64)
    except (StopIteration, ValueError):
        raise NetInputError(f"{path} is not a .pts file (expected 'n_points: N', '{{', N lines 'x y', '}}')") from None
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
        raise NetInputError(f"landmarks must be (n, 2), got {pts.shape} in {path}")
    return pts - PTS_ORIGIN


def write_pts(path, points: np.ndarray) -> None:
    """(n, 2) 0-based (x, y) -> a 1-based .pts file."""
    pts = np.asarray(points, dtype=np.float64) + PTS_ORIGIN
    body = "\n".join(f"{x:.4f} {y:.4f}" for x, y in pts)
    Path(path).write_text(f"version: 1\nn_points: {len(pts)}\n{{\n{body}\n}}\n")


def load_image(path) -> np.ndarray:
    """Any Pillow-readable image -> (H, W, 3) uint8 RGB."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                im = Image.fromarray((np.asarray(im, dtype=np.float64) / 257).clip(0, 255).astype(np.uint8))
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise NetInputError(f"{path} is not a readable image: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def crop_from_box(x0: float, y0: float, x1: float, y1: float, margin: float, size: int) -> np.ndarray:
    """(2, 3) float64 affine crop_from_image of the square crop around a box (see the module docstring)."""
    if not (x1 > x0 and y1 > y0):
        raise NetInputError(f"box must have x1 > x0 and y1 > y0, got {x0}, {y0}, {x1}, {y1}")
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    s = size / side
    return np.array([[s, 0, -(cx - side / 2) * s - 0.5], [0, s, -(cy - side / 2) * s - 0.5]])


def crop_from_landmarks(points: np.ndarray, margin: float, size: int) -> np.ndarray:
    lo, hi = points.min(0), points.max(0)
    return crop_from_box(lo[0], lo[1], hi[0], hi[1], margin, size)


def crop_image(image: np.ndarray, crop_from_image: np.ndarray, size: int) -> np.ndarray:
    """Resample (H, W, 3) uint8 into the (size, size, 3) crop exactly as the shard builder does:
    when shrinking by a >= 2, first average factor x factor blocks (Pillow ``reduce``), then bilinear
    Pillow AFFINE resampling; outside the image is black."""
    a = crop_from_image[0, 0]
    pil = Image.fromarray(np.ascontiguousarray(image))
    factor = max(1, int(np.floor(1.0 / a))) if a < 1.0 else 1
    A3 = np.vstack([crop_from_image, [0, 0, 1]])
    if factor > 1:  # reduced_xy = (xy + 0.5) / factor - 0.5
        pil = pil.reduce(factor)
        reduced = np.array([[1 / factor, 0, 0.5 / factor - 0.5], [0, 1 / factor, 0.5 / factor - 0.5], [0, 0, 1]])
        A3 = A3 @ np.linalg.inv(reduced)
    inv = np.linalg.inv(A3)
    lin, t = inv[:2, :2], inv[:2, 2]
    c = t + 0.5 - lin @ np.array([0.5, 0.5])  # Pillow samples in pixel-edge coordinates
    coeffs = (lin[0, 0], lin[0, 1], c[0], lin[1, 0], lin[1, 1], c[1])
    return np.asarray(pil.transform((size, size), Image.AFFINE, coeffs, resample=Image.BILINEAR), dtype=np.uint8)


def warp_image(image: np.ndarray, A: np.ndarray, out_hw: tuple[int, int], mode: str = "bilinear") -> np.ndarray:
    """Resample (H, W, C) with out_xy = A @ [x, y, 1] into out_hw (height, width); zeros outside."""
    H, W = image.shape[:2]
    A3 = np.vstack([A, [0, 0, 1]])
    inv = np.linalg.inv(A3)
    ys, xs = np.mgrid[0:out_hw[0], 0:out_hw[1]].astype(np.float64)
    src = np.stack([xs, ys, np.ones_like(xs)], -1) @ inv.T  # (h, w, 3)
    grid = torch.from_numpy(np.stack([(2 * src[..., 0] + 1) / W - 1, (2 * src[..., 1] + 1) / H - 1], -1)).float()
    t = torch.from_numpy(np.ascontiguousarray(image)).float().permute(2, 0, 1).unsqueeze(0)  # (1, C, H, W)
    out = F.grid_sample(t, grid.unsqueeze(0), mode=mode, padding_mode="zeros", align_corners=False)
    return out[0].permute(1, 2, 0).numpy()  # (h, w, C)


def predict(checkpoint, image_path, out_dir, landmarks_path=None, bbox=None, device: str = "auto") -> dict:
    """Run the network on one face; write iuv.png, overlay.png, crop.png and landmarks.pts into out_dir.

    Returns {"landmarks": (68, 2) image pixels, "crop_from_image": (2, 3), "files": [...]}.
    """
    if (landmarks_path is None) == (bbox is None):
        raise NetInputError("give exactly one of --landmarks PTS or --bbox X0,Y0,X1,Y1")
    ckpt = load_checkpoint(checkpoint)
    if ckpt.get("template") is None:
        raise NetInputError(f"{checkpoint} has no template landmark U-V (trained on shards without template.h5)")
    image = load_image(image_path)
    crop_cfg = ckpt.get("crop") or {"margin": 0.25, "size": ckpt.get("image_size", [256])[0]}
    size, margin = int(crop_cfg["size"]), float(crop_cfg["margin"])
    if landmarks_path is not None:
        A = crop_from_landmarks(read_pts(landmarks_path), margin, size)
    else:
        A = crop_from_box(*bbox, margin, size)
    crop = crop_image(image, A, size)
    dev = resolve_device(device)
    model = model_from_checkpoint(ckpt, dev)
    x = torch.from_numpy(crop.copy()).permute(2, 0, 1).unsqueeze(0).float().div(255).to(dev)  # (1, 3, S, S)
    pred = model.predict(x)
    uv, parts, fg = pred["uv"][0].float(), pred["parts"][0], pred["fg"][0]
    lm_crop = landmarks_from_uv(uv, fg, torch.tensor(ckpt["template"]["landmark_uv"])).numpy()
    A3 = np.vstack([A, [0, 0, 1]])
    lm_image = (np.hstack([lm_crop, np.ones((len(lm_crop), 1))]) @ np.linalg.inv(A3).T)[:, :2]

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(image_path).stem
    uv_np, parts_np = uv.cpu().numpy(), parts.cpu().numpy()
    Image.fromarray(iuv_png(uv_np, parts_np)).save(out_dir / f"{stem}_iuv.png")
    Image.fromarray(crop).save(out_dir / f"{stem}_crop.png")
    # overlay: the coloured prediction warped back onto the original image (nearest), blended 50 %
    colour = iuv_colour(uv_np, parts_np).astype(np.float32)
    inv = np.linalg.inv(A3)[:2]
    back = warp_image(np.concatenate([colour, (parts_np > 0)[..., None].astype(np.float32)], -1), inv,
                      image.shape[:2], mode="nearest")
    alpha = 0.5 * back[..., 3:4]
    overlay = Image.fromarray((image * (1 - alpha) + back[..., :3] * alpha).round().clip(0, 255).astype(np.uint8))
    draw_points(overlay, lm_image, (255, 0, 0), r=max(1.5, image.shape[1] / 400))
    overlay.save(out_dir / f"{stem}_overlay.png")
    write_pts(out_dir / f"{stem}.pts", lm_image)
    files = [str(out_dir / f"{stem}{s}") for s in ("_iuv.png", "_crop.png", "_overlay.png", ".pts")]
    log.info("wrote %s", ", ".join(files))
    return {"landmarks": lm_image, "crop_from_image": A, "files": files}


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    try:
        vals = tuple(float(t) for t in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 4:
        raise NetInputError(f"--bbox must be X0,Y0,X1,Y1 (4 numbers), got {text!r}")
    return vals


__all__ = ["predict", "read_pts", "write_pts", "load_image", "crop_from_box", "crop_from_landmarks", "parse_bbox"]
