"""`densereg-data build | info | verify | preview | export`: thin front ends over the shard library.

Each command parses, builds a frozen config (dataclass defaults <- optional --config file <- flags) and
calls one library function. Heavy imports happen inside the commands so that --help is instant.
"""

from __future__ import annotations

import json

import click


def _explicit(ctx: click.Context, names) -> dict:
    """The parameters the user gave on the command line (not defaults)."""
    from click.core import ParameterSource

    return {n: ctx.params[n] for n in names if ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE}


def resolve_build_config(ctx: click.Context, config_file: str | None):
    """BuildConfig from dataclass defaults <- config file (its [build] table) <- explicit flags."""
    from densereg_data.build.config import BuildConfig
    from densereg_data.config import layered_config

    return layered_config(BuildConfig, config_file, _explicit(ctx, [n for n in ctx.params if n in BuildConfig.fields()]),
                          section="build")


def register(group: click.Group) -> None:
    """Add build, info, verify, preview and export to the `densereg-data` group."""

    @group.command("build")
    @click.option("--dataset", default="300w", show_default=True, help="Registered dataset (densereg-data datasets).")
    @click.option("--model", default="menpo3d", show_default=True,
                  help="Face model NAME[:PATH] (densereg-data model list).")
    @click.option("--root", type=click.Path(file_okay=False), help="Dataset folder (not needed for sample).")
    @click.option("--images", type=click.Path(file_okay=False), default=None,
                  help="The dataset's images, when not under --root (MERL-RAV: AFLW's image folder).")
    @click.option("--out", type=click.Path(), default="shards", show_default=True, help="Output shard folder.")
    @click.option("--split", default="all", show_default=True, help="train|common|challenging|full|test|val|all.")
    @click.option("--size", type=int, default=256, show_default=True, help="Crop side S in pixels.")
    @click.option("--margin", type=float, default=0.25, show_default=True, help="Crop margin around the landmarks.")
    @click.option("--val-fraction", type=float, default=0.2, show_default=True, help="pts: fraction put in val.")
    @click.option("--seed", type=int, default=0, show_default=True, help="pts: seed of the train/val hash.")
    @click.option("--workers", type=int, default=None, help="Worker processes [default: all cores].")
    @click.option("--executor", default="local", show_default=True, help="local (process pool) or dask.")
    @click.option("--scheduler", default=None, help="Dask scheduler address tcp://HOST:8786 [default: a local cluster].")
    @click.option("--max-fit-nme", type=float, default=None, help="Skip samples whose fit NME is larger.")
    @click.option("--max-skip-fraction", type=float, default=0.05, show_default=True,
                  help="Fail (exit 2) when more than this fraction is skipped.")
    @click.option("--compression", default="lzf", show_default=True, help="lzf (docs/FORMAT.md) or none (faster reads).")
    @click.option("--views", default=None, metavar="yaw=D1,D2,...",
                  help="Also render new views of every face, the head turned D degrees further towards profile "
                       "(3D profiling, exact labels; deltas in [-90, 90]).")
    @click.option("--views-pitch", default=None, metavar="P1,P2,...",
                  help="Pitch deltas combined with every --views yaw delta (e.g. 0,-15,15).")
    @click.option("--overwrite", is_flag=True, help="Replace an output folder built with another configuration.")
    @click.option("--config", "config_file", type=click.Path(dir_okay=False), help="JSON/TOML file of build settings.")
    @click.pass_context
    def build(ctx: click.Context, config_file: str | None, **_: object) -> None:
        """Label a dataset and write HDF5 shards (resumable: rerun the same command after an interruption)."""
        from densereg_data.build.pipeline import run_build

        report = run_build(resolve_build_config(ctx, config_file))
        speed = f"{report.images_per_second:.1f} images/s" if report.labelled else "every shard was already complete"
        views = f", {report.views} of them new views" if report.views else ""
        click.echo(f"wrote {report.written} samples{views} to {report.out} ({report.skipped} skipped; {speed})")

    @group.command("info")
    @click.argument("path", type=click.Path())
    @click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
    def info(path: str, as_json: bool) -> None:
        """Summarise a shard folder: splits, counts, template, sizes, fit error, skipped samples."""
        from densereg_data.format.verify import format_info, info as shard_info

        summary = shard_info(path)
        click.echo(json.dumps(summary, indent=2) if as_json else format_info(summary))

    @group.command("verify")
    @click.argument("path", type=click.Path())
    @click.pass_context
    def verify(ctx: click.Context, path: str) -> None:
        """Check every shard's sha256, schema and the index; exit 1 naming the first bad one."""
        from densereg_data.errors import ShardFormatError
        from densereg_data.format.verify import verify as shard_verify

        try:
            summary = shard_verify(path)
        except ShardFormatError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        click.echo(f"ok: {summary['shards']} shards, {summary['samples']} samples, {summary['bytes'] / 1e6:.1f} MB")

    @group.command("preview")
    @click.argument("path", type=click.Path())
    @click.option("--out", type=click.Path(dir_okay=False), required=True, help="PNG file to write.")
    @click.option("--n", type=click.IntRange(1, 400), default=16, show_default=True, help="Samples on the sheet.")
    @click.option("--split", default=None, help="Split or alias [default: all].")
    @click.option("--views", is_flag=True, help="One row per face: the original beside its new views (build --views).")
    def preview(path: str, out: str, n: int, split: str | None, views: bool) -> None:
        """Contact sheet: crops with iso-u/iso-v lines, part colours and landmarks."""
        from densereg_data.build.preview import write_contact_sheet
        from densereg_data.io.outputs import check_output

        check_output(out, [path])
        click.echo(f"wrote {write_contact_sheet(path, out, views=views, n=n, split=split)}")

    @group.command("export")
    @click.argument("path", type=click.Path())
    @click.option("--format", "fmt", default="densepose", show_default=True, help="Export format.")
    @click.option("--out", type=click.Path(file_okay=False), required=True, help="Output folder.")
    @click.option("--split", default=None, help="Split or alias [default: all].")
    @click.option("--points", type=click.IntRange(1, 10000), default=100, show_default=True,
                  help="densepose: sampled points per face.")
    def export(path: str, fmt: str, out: str, split: str | None, points: int) -> None:
        """Export shards, e.g. as DensePose IUV PNGs + COCO-style JSON."""
        from densereg_data.build.export import export_shards
        from densereg_data.io.outputs import check_output

        check_output(out, [path])
        summary = export_shards(path, out, format=fmt, split=split, points=points)
        click.echo(f"exported {summary['samples']} samples to {summary['out']}")
