"""The ``swinir`` command: Typer app wiring and the one place where errors become exit codes.

Each command group lives in its own module and registers itself on :data:`app` here. Commands raise
:class:`~swinir_cli.errors.SwinIRError`; :func:`main` prints it as one line and exits with its code
(a traceback only when ``SWINIR_DEBUG=1``).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from typer import Abort

from .._version import __version__
from ..errors import SwinIRError
from . import evaluate, models, restore
from .output import Output

app = typer.Typer(
    name="swinir",
    help="Restore images with SwinIR: upscale (super-resolution), denoise and remove JPEG artifacts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"swinir-cli {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Show the version and exit."),
    ] = False,
) -> None:
    """Restore images with SwinIR: upscale (super-resolution), denoise and remove JPEG artifacts."""


restore.register(app)
evaluate.register(app)
models.register(app)

EXIT_INTERRUPTED = 130

# The usage errors the app raises are click's: the click package's before typer 0.26, typer's private
# copy of it since. typer exports neither's ClickException, but its public BadParameter descends from
# the one in use, so this names it on every typer version without importing a private module.
_ClickException = next(kind for kind in typer.BadParameter.__mro__ if kind.__name__ == "ClickException")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns (and exits with) 0 on success, 1 on failure, 2 on usage errors."""
    debug = os.environ.get("SWINIR_DEBUG", "") not in ("", "0")
    console = Output()
    try:
        code = app(args=argv, prog_name="swinir", standalone_mode=False)
    except SwinIRError as exc:
        if debug:
            raise
        console.error(str(exc))
        code = exc.exit_code
    except _ClickException as exc:
        if debug:
            raise
        hint = ""
        context = getattr(exc, "ctx", None)
        if context is not None:
            hint = f" (see '{context.command_path} --help')"
        console.error(exc.format_message() + hint)
        code = exc.exit_code
    except (KeyboardInterrupt, Abort):
        console.error("interrupted")
        code = EXIT_INTERRUPTED
    code = code if isinstance(code, int) else 0
    if argv is None:
        sys.exit(code)
    return code
