"""`densereg-net predict`'s files: the library returns arrays (`densereg_net.predict.Predictor`), this
writes them: STEM_iuv.png (`densereg_data.draw.iuv_image`), STEM_crop.png, STEM_overlay.png (the
prediction drawn on the source image) and STEM.pts (`densereg_data.io.landmarks.write_pts`, 1-based),
never over an input and never into a shard folder (`prediction_paths`)."""

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


#: The files `densereg-net predict` writes into --out, named after the image's stem.
PREDICTION_FILES = ("{stem}_iuv.png", "{stem}_crop.png", "{stem}_overlay.png", "{stem}.pts")


def prediction_paths(out_dir: str | Path, stem: str, inputs) -> list[Path]:
    """The paths of the four files, each refused (InputError, one line) if it would replace one of
    `inputs` (the checkpoint, the image, the landmark file) or land in a shard folder (`check_output`)."""
    from densereg_data.io.outputs import check_output

    paths = [Path(out_dir) / name.format(stem=stem) for name in PREDICTION_FILES]
    for path in paths:
        check_output(path, inputs, what=f"--out {out_dir}:")
    return paths


def write_prediction(prediction, image, paths: list[Path], k: int) -> list[str]:
    """Write the four files of one prediction (image: (H, W, 3) uint8, the source) at `paths` (from
    `prediction_paths`); returns them."""
    from densereg_data.draw import iuv_image
    from densereg_data.io.images import write_png
    from densereg_data.io.landmarks import write_pts
    from densereg_net.draw import prediction_overlay

    iuv, crop, overlay, pts = paths
    iuv.parent.mkdir(parents=True, exist_ok=True)
    p = prediction
    files = [write_png(iuv, iuv_image(p.uv, p.parts)), write_png(crop, p.crop),
             write_png(overlay, prediction_overlay(image, p.uv, p.parts, p.crop_from_image, p.landmarks, k)),
             write_pts(pts, p.landmarks)]
    return [str(f) for f in files]
