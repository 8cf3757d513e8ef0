"""What both command-line groups share: logging set-up, exit codes and one-line errors.

Exit codes: 0 success, 2 bad input (one line on stderr; the traceback only with -v), 1 a bug (or a
command's own failure verdict, such as `verify` finding a bad shard).
"""

from __future__ import annotations

import logging
import sys
from typing import Sequence

import click

log = logging.getLogger("densereg")


def _input_error_types() -> tuple[type[BaseException], ...]:
    """Errors that mean "the user's input is bad": shown as one line, exit 2."""
    from densereg_data.errors import DenseRegError

    return (DenseRegError, FileNotFoundError, PermissionError, IsADirectoryError, OSError)


def setup_logging(verbose: int, quiet: bool) -> None:
    """Configure the root logger for a CLI run: WARNING with -q, INFO by default, DEBUG with -v."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 0 else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger().setLevel(level)


def run_group(group: click.Group, argv: Sequence[str] | None, prog_name: str) -> int:
    """Run a click group as a program and turn errors into exit codes (never a traceback by default)."""
    verbose = argv is not None and any(a in ("-v", "--verbose") for a in argv) or (
        argv is None and any(a in ("-v", "--verbose") for a in sys.argv[1:])
    )
    try:
        code = group.main(args=list(argv) if argv is not None else None, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return 2
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted; everything already written is kept.", err=True)
        return 130
    except _input_error_types() as exc:
        if verbose:
            log.exception("%s failed", prog_name)
        click.echo(f"error: {exc}", err=True)
        return 2
    except Exception:  # a bug: show it
        log.exception("%s failed with an unexpected error (a bug: please report it)", prog_name)
        return 1
    return code if isinstance(code, int) else 0  # ctx.exit(n) comes back as n


def verbosity_options(f):
    """-v/--verbose and -q/--quiet on a group."""
    f = click.option("-v", "--verbose", count=True, help="More log output; tracebacks on errors.")(f)
    f = click.option("-q", "--quiet", is_flag=True, help="Warnings and errors only.")(f)
    return f
