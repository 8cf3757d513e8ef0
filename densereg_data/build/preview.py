"""Contact sheets of shard samples: the crop with iso-u / iso-v lines, part colours and landmarks.

Convention: what a tile shows
    The crop image, with part colours blended at 35 % on the foreground (`draw.PART_COLOURS`, label order),
    white lines where ``floor(K u)`` changes between 4-neighbours (iso-u, K = index["k"]), yellow lines
    where ``floor(K v)`` changes (iso-v), and the 68 landmarks as green dots (the eye corners 36, 45 red),
    occluded ones (`landmark_state` 2) as hollow magenta squares, missing ones not at all.
    A frontal face therefore shows near-vertical white lines and near-horizontal yellow ones, and u grows
    left to right.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from densereg_data.conventions import MISSING, N_LANDMARKS, OCCLUDED, OUTER_EYE_CORNERS, VISIBLE
from densereg_data.draw import PART_COLOURS, iso_uv_lines
from densereg_data.errors import ShardFormatError

__all__ = ["render_tile", "contact_sheet", "views_sheet", "write_contact_sheet"]


def render_tile(sample: dict, k: int = 10) -> np.ndarray:
    """One sample (a dict as `open_shards` returns) -> (S, S, 3) uint8 annotated tile."""
    img = sample["image"].astype(np.float64)
    parts = sample["parts"]
    uv = sample["uv"].astype(np.float32)
    fg = parts > 0
    tile = img.copy()
    tile[fg] = 0.65 * img[fg] + 0.35 * PART_COLOURS[np.minimum(parts[fg], 8)]
    iso_u, iso_v = iso_uv_lines(uv, parts, k)
    tile[iso_u] = (255, 255, 255)
    tile[iso_v] = (255, 230, 0)
    s = img.shape[0]
    r = max(1, s // 160)
    state = np.asarray(sample.get("landmark_state", np.full(N_LANDMARKS, VISIBLE)))
    for i, (x, y) in enumerate(np.asarray(sample["landmarks"], np.float64)):
        if state[i] == MISSING or not np.isfinite(x + y):
            continue
        cx, cy = int(round(x)), int(round(y))
        box = tile[max(cy - r, 0):max(cy + r + 1, 0), max(cx - r, 0):max(cx + r + 1, 0)]
        if state[i] == OCCLUDED:  # a hollow magenta square: placed behind an occluder, position guessed
            if box.size:
                box[[0, -1]] = (255, 0, 255)
                box[:, [0, -1]] = (255, 0, 255)
            continue
        box[...] = (255, 40, 40) if i in OUTER_EYE_CORNERS else (40, 255, 40)
    return np.clip(np.rint(tile), 0, 255).astype(np.uint8)


def contact_sheet(path: str | os.PathLike, *, n: int = 16, split: str | None = None, columns: int | None = None,
                  tile: int = 256) -> np.ndarray:
    """A grid of `n` annotated tiles, samples evenly spaced over the split; (H, W, 3) uint8."""
    from PIL import Image, ImageDraw

    from densereg_data.format.reader import open_shards

    ds = open_shards(path, split)
    if len(ds) == 0:
        raise ShardFormatError(f"no samples to preview in {path} (split {split or 'all'})")
    n = max(1, min(int(n), len(ds)))
    picks = np.unique(np.linspace(0, len(ds) - 1, n).round().astype(int))
    cols = columns or int(np.ceil(np.sqrt(len(picks))))
    rows = int(np.ceil(len(picks) / cols))
    cap = 14
    sheet = Image.new("RGB", (cols * tile, rows * (tile + cap)), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    k = ds.index.k
    for j, i in enumerate(picks):
        sample = ds[int(i)]
        im = Image.fromarray(render_tile(sample, k))
        if im.size[0] != tile:
            im = im.resize((tile, tile), Image.BILINEAR)
        x0, y0 = (j % cols) * tile, (j // cols) * (tile + cap)
        sheet.paste(im, (x0, y0))
        label = f"{sample['source']}  nme {float(sample['fit_nme']):.3f}"
        draw.text((x0 + 3, y0 + tile + 1), label[-(tile // 6):], fill=(220, 220, 220))
    ds.close()
    return np.asarray(sheet)


def views_sheet(path: str | os.PathLike, *, n: int = 16, split: str | None = None, tile: int = 160) -> np.ndarray:
    """One row per face: the original, then its new views (build.views) by delta, each tile captioned
    with its view delta and pose; `n` faces with views, evenly spaced over the split; (H, W, 3) uint8."""
    from PIL import Image, ImageDraw

    from densereg_data.format.reader import open_shards, read_split

    ds = open_shards(path, split)
    # only the small per-sample fields: the pixels are read for the tiles drawn, not for every sample
    small = read_split(ds.index, split, ("source", "view_delta")) if len(ds) else {}
    if not len(ds) or not np.any(small["view_delta"] != 0):
        raise ShardFormatError(f"no views to preview in {path} (split {split or 'all'}): build with --views")
    delta = np.asarray(small["view_delta"], np.float64)
    rows: dict[str, list[int]] = {}
    for i, source in enumerate(small["source"]):
        rows.setdefault(source.decode("utf-8") if isinstance(source, bytes) else str(source), []).append(i)
    faces = [r for r in rows.values() if any(np.all(delta[i] == 0) for i in r) and len(r) > 1]
    faces = [faces[j] for j in np.unique(np.linspace(0, len(faces) - 1, max(1, min(int(n), len(faces)))).round().astype(int))]
    cols = max(len(r) for r in faces)
    cap = 12
    sheet = Image.new("RGB", (cols * tile, len(faces) * (tile + cap)), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for r, members in enumerate(faces):
        members = sorted(members, key=lambda i: (bool(np.any(delta[i] != 0)), delta[i, 1], abs(delta[i, 0]), delta[i, 0]))
        for c, i in enumerate(members):
            sample = ds[int(i)]
            im = Image.fromarray(render_tile(sample, ds.index.k)).resize((tile, tile), Image.BILINEAR)
            x0, y0 = c * tile, r * (tile + cap)
            sheet.paste(im, (x0, y0))
            yaw = float(sample["pose"][0])
            label = ("original" if not np.any(delta[i] != 0) else f"{delta[i, 0]:+g}/{delta[i, 1]:+g}") + f" yaw {yaw:.0f}"
            draw.text((x0 + 3, y0 + tile), label, fill=(220, 220, 220))
    ds.close()
    return np.asarray(sheet)


def write_contact_sheet(path: str | os.PathLike, out: str | os.PathLike, views: bool = False, **kwargs) -> Path:
    """`contact_sheet` (or, with `views`, `views_sheet`) written as a PNG file at `out`."""
    from densereg_data.io.images import write_png

    out = Path(out)
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    return write_png(out, (views_sheet if views else contact_sheet)(path, **kwargs))
