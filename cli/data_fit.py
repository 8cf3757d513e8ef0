"""`densereg-data fit | datasets`: fit-only runs and the registered datasets (thin front ends)."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Add fit and datasets to the `densereg-data` group."""

    @group.command("fit")
    @click.option("--dataset", required=True, help="Registered dataset (densereg-data datasets).")
    @click.option("--model", default="menpo3d", show_default=True, help="Face model NAME[:PATH] (densereg-data model list).")
    @click.option("--root", type=click.Path(file_okay=False), help="Dataset folder.")
    @click.option("--images", type=click.Path(file_okay=False), default=None, help="Not needed: a fit uses no image.")
    @click.option("--out", type=click.Path(), required=True, help="Output folder of the fit results.")
    @click.option("--split", default="all", show_default=True, help="A split of the dataset, or all.")
    @click.option("--val-fraction", type=float, default=0.2, show_default=True, help="pts: fraction put in val.")
    @click.option("--seed", type=int, default=0, show_default=True, help="pts: seed of the train/val hash.")
    @click.option("--workers", type=int, default=None, help="Worker processes [default: all cores].")
    @click.option("--samples-per-shard", type=int, default=1000, show_default=True, help="Faces per result file.")
    @click.option("--scheme", type=click.Choice(["ibug68", "native"]), default="ibug68", show_default=True,
                  help="Fit the 68 iBUG points, or the dataset's own scheme (WFLW's 98: its extra points bound "
                       "to the model from half of the faces, the other half marked held-out).")
    @click.pass_context
    def fit(ctx: click.Context, **_: object) -> None:
        """Fit the face model to every annotated face, no images needed: poses, coefficients, fit errors
        (resumable: rerun the same command after an interruption)."""
        from densereg_cli.data_build import resolve_build_config
        from densereg_data.build.fitrun import run_fit

        report = run_fit(resolve_build_config(ctx, None))
        click.echo(open(f"{report.out}/summary.md").read().rstrip())
        resumed = f", {report.resumed_files} result files kept from before" if report.resumed_files else ""
        click.echo(f"fitted {report.fitted} of {report.faces} faces into {report.out} ({report.skipped} skipped{resumed}; "
                   f"{report.faces_per_second:.0f} faces/s)")

    @group.command("datasets")
    def datasets() -> None:
        """List the registered datasets: layout (what --root points at), splits, subsets, licence."""
        from densereg_data.build.datasets import DATASETS

        for name, cls in sorted(DATASETS.items()):
            click.echo(f"{name}\n  layout: {cls.layout}\n  splits: {', '.join(cls.splits)}"
                       + (f"\n  subsets: {', '.join(cls.subsets)}" if cls.subsets else "")
                       + f"\n  licence: {cls.licence}")
