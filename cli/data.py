"""`densereg-data`: label one face, inspect the template, build and inspect shards.

Thin front ends: parse, build a config, call one library function. Heavy imports inside commands.
"""

from __future__ import annotations

from typing import Sequence

import click

from densereg_cli.common import run_group, setup_logging, verbosity_options


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@verbosity_options
def cli(verbose: int, quiet: bool) -> None:
    """Dense face correspondence labels: fit a 3D face template to 68 landmarks, render U-V and parts."""
    setup_logging(verbose, quiet)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `densereg-data` console script."""
    return run_group(cli, argv, "densereg-data")


if __name__ == "__main__":
    raise SystemExit(main())
