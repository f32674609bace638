"""Stopping on a signal: SIGTERM (``timeout``, ``docker stop``, systemd) and SIGHUP (a closed terminal)
stop a batch exactly as Ctrl-C (SIGINT) does.

Each raises :class:`KeyboardInterrupt` in the main thread, so the one Ctrl-C path runs: the image in flight
removes its temporary file, the summary and the ``--json`` ``interrupted`` record are written, and the
exit code is :data:`EXIT_INTERRUPTED` whichever signal came. Imports nothing from the rest of the project.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

#: The exit code of a batch stopped by SIGINT, SIGTERM or SIGHUP (128 + SIGINT, as shells report Ctrl-C).
EXIT_INTERRUPTED = 130
#: The signals handled as Ctrl-C besides SIGINT itself (SIGHUP does not exist on Windows).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def interrupt_on_stop_signals() -> Callable[[], None]:
    """From now on, :data:`STOP_SIGNALS` raise KeyboardInterrupt in the main thread (as SIGINT does);
    returns the function that puts the previous handlers back (a worker process keeps them for life).

    Does nothing off the main thread (only it may set handlers), and leaves a signal that was ignored
    when the process started (``nohup`` ignores SIGHUP) ignored.
    """
    previous: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():
        for number in STOP_SIGNALS:
            handler = signal.getsignal(number)
            if handler is not signal.SIG_IGN:
                previous[number] = signal.SIG_DFL if handler is None else handler
                signal.signal(number, _raise_keyboard_interrupt)

    def restore() -> None:
        for number, handler in previous.items():
            signal.signal(number, handler)  # type: ignore[arg-type]

    return restore


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
