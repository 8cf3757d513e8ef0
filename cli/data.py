"""`densereg-data`: label one face, inspect the face models, build and inspect shards.

Thin front ends: parse, build a config, call one library function. Heavy imports inside commands.
"""

from __future__ import annotations

import os

# The fit solves many tiny linear systems: BLAS threads only fight each other (and the build's worker
# processes). One thread per process unless the user says otherwise; set before numpy is imported.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from pathlib import Path  # noqa: E402
from typing import Sequence  # noqa: E402

import click

from densereg_cli.common import run_group, setup_logging, verbosity_options


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@verbosity_options
def cli(verbose: int, quiet: bool) -> None:
    """Dense face correspondence labels: fit a 3D face template to 68 landmarks, render U-V and parts."""
    setup_logging(verbose, quiet)


MODEL_HELP = "Face model NAME[:PATH] (see `densereg-data model list`)."


@cli.command()
@click.argument("image", type=click.Path(path_type=Path))
@click.argument("landmarks", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Folder for labels.npz, label.json, iuv.png, overlay.png.")
@click.option("--model", default="menpo3d", show_default=True, help=MODEL_HELP)
def label(image: Path, landmarks: Path, out_dir: Path, model: str) -> None:
    """Fit a face model to one face's 68 landmarks and write its dense labels at full resolution."""
    from densereg_data.face.jobs import label_face_files

    s = label_face_files(image, landmarks, out_dir, model)
    click.echo(
        f"{image}: fit landmark error {s.mean_error_px:.2f} px, NME {100 * s.nme:.2f}% of the eye distance; "
        f"yaw {s.pose[0]:+.1f}, pitch {s.pose[1]:+.1f}, roll {s.pose[2]:+.1f} deg; "
        f"{s.foreground_pixels} face pixels -> {s.out_dir}"
    )


@cli.group("model")
def model_group() -> None:
    """The face models: what is registered, and what each one is."""


@model_group.command("list")
def model_list() -> None:
    """List the registered face models, what each needs and its licence."""
    from densereg_data.face.jobs import list_face_models

    for m in list_face_models():
        spec = f"{m['name']}:PATH (PATH: {m['path']})" if m["path"] else m["name"]
        click.echo(f"{m['name']}{' (default)' if m['default'] else ''}\n  spec: {spec}\n  needs: {m['needs']}\n  licence: {m['licence']}")


@model_group.command("show")
@click.argument("spec", required=False)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Also draw it here: U-V over the mesh, parts, landmarks, jaw contour, prior samples.")
@click.option("--model", default="menpo3d", show_default=True, help=MODEL_HELP + " Same as SPEC.")
def model_show(spec: str | None, out_dir: Path | None, model: str) -> None:
    """Print the facts of face model SPEC (NAME[:PATH], default menpo3d); with --out, draw it."""
    import json

    from densereg_data.face.jobs import show_face_model

    click.echo(json.dumps(show_face_model(spec or model, out_dir), indent=2))
    if out_dir is not None:
        click.echo(f"pictures written to {out_dir}", err=True)


@cli.group()
def template() -> None:
    """The face template (`template show` is `model show`)."""


template.add_command(model_show, "show")


__import__("densereg_cli.data_build").data_build.register(cli)  # build, info, verify, preview, export
__import__("densereg_cli.data_fit").data_fit.register(cli)  # fit, datasets


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `densereg-data` console script."""
    return run_group(cli, argv, "densereg-data")


if __name__ == "__main__":
    raise SystemExit(main())
