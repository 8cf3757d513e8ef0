"""`densereg-net predict`'s files: the library returns arrays (`densereg_net.predict.Predictor`), this
writes them: STEM_iuv.png (`densereg_data.draw.iuv_image`), STEM_crop.png, STEM_overlay.png (the
prediction drawn on the source image) and STEM.pts (`densereg_data.io.landmarks.write_pts`, 1-based)."""

from __future__ import annotations

from pathlib import Path


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """"X0,Y0,X1,Y1" -> four floats; ShapeError (one line, exit 2) otherwise."""
    from densereg_data.errors import ShapeError

    try:
        values = tuple(float(t) for t in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise ShapeError(f"--bbox must be X0,Y0,X1,Y1 (4 numbers), got {text!r}")
    return values


def write_prediction(prediction, image, out_dir: str | Path, stem: str, k: int) -> list[str]:
    """Write the four files of one prediction (image: (H, W, 3) uint8, the source); returns their paths."""
    from densereg_data.draw import iuv_image
    from densereg_data.io.images import write_png
    from densereg_data.io.landmarks import write_pts
    from densereg_net.draw import prediction_overlay

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    p = prediction
    files = [write_png(out / f"{stem}_iuv.png", iuv_image(p.uv, p.parts)),
             write_png(out / f"{stem}_crop.png", p.crop),
             write_png(out / f"{stem}_overlay.png",
                       prediction_overlay(image, p.uv, p.parts, p.crop_from_image, p.landmarks, k)),
             write_pts(out / f"{stem}.pts", p.landmarks)]
    return [str(f) for f in files]
