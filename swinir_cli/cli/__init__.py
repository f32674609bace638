"""The ``swinir`` command: Typer app wiring and the one place where errors become exit codes.

Each command group lives in its own module and registers itself on :data:`app` here. Commands raise
:class:`~swinir_cli.errors.SwinIRError`; :func:`main` prints it as one line and exits with its code
(a traceback only when ``SWINIR_DEBUG=1``).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import typer
from typer import Abort
from typer.core import TyperArgument

from ..errors import InterruptedByUser, SwinIRError
from ..signals import EXIT_INTERRUPTED, interrupt_on_stop_signals
from ..stdout import deferred_failure
from . import evaluate, models, restore
from .options import Help, Version
from .output import Output

app = typer.Typer(
    name="swinir",
    help="Restore images with SwinIR: upscale (super-resolution), denoise and remove JPEG artifacts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    add_help_option=False,
)


@app.callback()
def _options(version: Version = False, show_help: Help = False) -> None:
    """Restore images with SwinIR: upscale (super-resolution), denoise and remove JPEG artifacts.

    [b]Examples[/]

      swinir upscale photo.jpg          [dim]# writes photo_x4.png[/]

      swinir denoise -o clean/ shots/   [dim]# every image of shots/[/]

      swinir models                     [dim]# the model names --model takes[/]
    """


restore.register(app)
evaluate.register(app)
models.register(app)

# The usage errors the app raises are click's: the click package's before typer 0.26, typer's private
# copy of it since. typer exports neither's ClickException, but its public BadParameter descends from
# the one in use, so this names it on every typer version without importing a private module.
_ClickException = next(kind for kind in typer.BadParameter.__mro__ if kind.__name__ == "ClickException")


def _command() -> typer.core.TyperGroup:
    """The Click command of :data:`app`, its arguments shown by their metavar alone in help (Typer would
    add their Python type, such as ``<list[str]>``), each command's Ctrl-C an :class:`InterruptedByUser`
    (Typer would turn it into a silent exit 130 before :func:`main` sees it)."""
    command = typer.main.get_command(app)
    groups = [command, *getattr(command, "commands", {}).values()]
    for group in groups:
        for param in group.params:
            if isinstance(param, TyperArgument):
                param.display_type_rich = lambda ctx: None  # type: ignore[attr-defined]
        if group.callback is not None:
            group.callback = _interruptible(group.callback)
    return command


def _interruptible(callback: Callable[..., Any]) -> Callable[..., Any]:
    """``callback``, its KeyboardInterrupt raised as :class:`InterruptedByUser`."""

    @functools.wraps(callback)
    def interruptible(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except KeyboardInterrupt:
            raise InterruptedByUser("interrupted") from None

    return interruptible


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns (and exits with) 0 on success, 1 on failure, 2 on usage errors,
    130 when interrupted (SIGINT, SIGTERM or SIGHUP alike: :mod:`swinir_cli.signals`). Without arguments
    it prints the help (exit 0)."""
    debug = os.environ.get("SWINIR_DEBUG", "") not in ("", "0")
    console = Output()
    args = sys.argv[1:] if argv is None else argv
    restore_signals = interrupt_on_stop_signals()
    try:
        code = _command().main(args=list(args) or ["--help"], prog_name="swinir", standalone_mode=False)
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
    finally:
        restore_signals()
    code = code if isinstance(code, int) else 0
    stdout_failure = deferred_failure()
    if stdout_failure is not None:  # the work went on without its --json records: said once, at the end
        console.error(str(stdout_failure))
        code = code or stdout_failure.exit_code
    if argv is None:
        sys.exit(code)
    return code
