"""Export shards to other layouts. ``densepose``: per-sample IUV PNGs and a COCO-style JSON.

Convention: densepose export
    ``DIR/images/NNNNNN.png`` the crop (S x S RGB); ``DIR/iuv/NNNNNN_IUV.png`` three channels in file
    order (R, G, B) = (part index I in 0..8, round(255 u), round(255 v)), all 0 on background (I is the
    face part of `conventions.PART_NAMES`, not DensePose's 24 body parts). ``DIR/annotations.json``:
    COCO ``images`` (id, file_name, iuv_file, height, width, source, split), one ``annotations`` entry per
    sample with ``bbox = [0, 0, S, S]`` (the whole crop, COCO pixel-edge coordinates) and sampled
    foreground points ``dp_x, dp_y`` in DensePose's 0..256 box frame, ``dp_x = 256 (col + 0.5) / S``
    (so ``col = dp_x S / 256 - 0.5``), with ``dp_I`` (part), ``dp_U``, ``dp_V`` (float U-V at that pixel).
    Points are drawn per sample with ``np.random.default_rng([seed, sample index])``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from densereg_data.conventions import PART_NAMES
from densereg_data.draw import iuv_image
from densereg_data.errors import ShardFormatError

__all__ = ["EXPORTERS", "export_shards", "export_densepose", "read_densepose_export"]

EXPORTERS = {}


def register_exporter(name: str):
    def deco(fn):
        EXPORTERS[name] = fn
        return fn

    return deco


def export_shards(path: str | os.PathLike, out: str | os.PathLike, *, format: str = "densepose", **kwargs) -> dict:
    """Export a shard directory with the exporter registered as `format`; returns a summary dict."""
    try:
        fn = EXPORTERS[format]
    except KeyError:
        raise ShardFormatError(f"unknown export format {format!r} (valid: {', '.join(sorted(EXPORTERS))})") from None
    return fn(path, out, **kwargs)


@register_exporter("densepose")
def export_densepose(path: str | os.PathLike, out: str | os.PathLike, *, split: str | None = None,
                     points: int = 100, seed: int = 0) -> dict:
    """Write the densepose layout (see the module Convention) for every sample of `split`."""
    from densereg_data.io.images import write_png
    from densereg_data.format.files import atomic_write_bytes, dumps_json
    from densereg_data.format.reader import open_shards

    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "iuv").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    with open_shards(path, split) as ds:
        for i in range(len(ds)):
            s = ds[i]
            size = s["parts"].shape[0]
            name = f"{i:06d}"
            write_png(out / "images" / f"{name}.png", s["image"])
            write_png(out / "iuv" / f"{name}_IUV.png", iuv_image(s["uv"], s["parts"]))
            rows, cols = np.nonzero(s["parts"] > 0)
            rng = np.random.default_rng([seed, i])
            pick = np.sort(rng.choice(len(rows), size=min(points, len(rows)), replace=False)) if len(rows) else []
            r, c = rows[pick], cols[pick]
            uv = s["uv"][r, c].astype(np.float64)
            images.append({"id": i, "file_name": f"images/{name}.png", "iuv_file": f"iuv/{name}_IUV.png",
                           "height": size, "width": size, "source": s["source"], "split": ds.locate(i)[0]["split"]})
            annotations.append({
                "id": i, "image_id": i, "category_id": 1, "iscrowd": 0, "bbox": [0, 0, size, size],
                "area": size * size,
                "dp_x": (256.0 * (c + 0.5) / size).tolist(), "dp_y": (256.0 * (r + 0.5) / size).tolist(),
                "dp_I": s["parts"][r, c].astype(int).tolist(), "dp_U": uv[:, 0].tolist(), "dp_V": uv[:, 1].tolist(),
            })
    doc = {"info": {"description": f"densereg export of {Path(path).resolve()}", "part_names": list(PART_NAMES)},
           "images": images, "annotations": annotations, "categories": [{"id": 1, "name": "face", "supercategory": "face"}]}
    atomic_write_bytes(out / "annotations.json", dumps_json(doc))
    return {"out": str(out), "samples": len(images), "points": sum(len(a["dp_x"]) for a in annotations)}


def read_densepose_export(out: str | os.PathLike) -> list[dict]:
    """Read a densepose export back: per sample parts (S, S) uint8, uv (S, S, 2) float32 (from the 8-bit
    IUV), image, and the annotation's points as rows/cols/I/U/V arrays."""
    from densereg_data.io.images import read_image

    out = Path(out)
    doc = json.loads((out / "annotations.json").read_text(encoding="utf-8"))
    anns = {a["image_id"]: a for a in doc["annotations"]}
    samples = []
    for im in doc["images"]:
        iuv = read_image(out / im["iuv_file"])
        a = anns[im["id"]]
        size = im["width"]
        samples.append({
            "source": im["source"], "image": read_image(out / im["file_name"]), "parts": iuv[..., 0].copy(),
            "uv": iuv[..., 1:].astype(np.float32) / 255.0,
            "cols": np.rint(np.asarray(a["dp_x"]) * size / 256.0 - 0.5).astype(int),
            "rows": np.rint(np.asarray(a["dp_y"]) * size / 256.0 - 0.5).astype(int),
            "I": np.asarray(a["dp_I"], int), "U": np.asarray(a["dp_U"]), "V": np.asarray(a["dp_V"]),
        })
    return samples
