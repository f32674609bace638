"""All terminal output of the command line goes through :class:`Output`.

Messages and progress go to stderr, so that stdout stays free for data (``-o -`` and ``--json``). Progress
bars are drawn only on a terminal and never when quiet; elsewhere long work reports plain log lines. Every
message is :func:`~swinir_cli.text.printable`: a file name's control characters are shown escaped.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from ..download import DownloadEvent, DownloadProgress, DownloadRetry, DownloadWaiting
from ..errors import StdoutError
from ..stdout import defer_failure, write_stdout
from ..text import printable

#: Seconds between two plain progress lines when stderr is not a terminal.
PLAIN_PROGRESS_INTERVAL = 5.0


#: Width of tables written to a file or pipe, where no terminal says how wide it is.
PIPE_WIDTH = 160


def _shown(message: str) -> str:
    """``message`` as rich prints it literally, its control characters escaped."""
    return escape(printable(message))


def _console(*, stderr: bool) -> Console:
    """A console for stdout or stderr; on a file or pipe it is wide (``$COLUMNS`` when set), so tables are
    not squeezed."""
    console = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not console.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
        console = Console(stderr=stderr, highlight=False, soft_wrap=True, width=PIPE_WIDTH)
    return console


class Output:
    """The one object that writes to the terminal.

    Args:
        quiet: only errors are printed.
        json_lines: results go to stdout as one JSON object per line (and nothing else goes to stdout).
    """

    def __init__(self, *, quiet: bool = False, json_lines: bool = False) -> None:
        self.quiet = quiet
        self.json_lines = json_lines
        self.err = _console(stderr=True)
        self.out = _console(stderr=False)

    @property
    def interactive(self) -> bool:
        return self.err.is_terminal and not self.quiet

    def info(self, message: str) -> None:
        if not self.quiet:
            self.err.print(_shown(message))

    def warning(self, message: str) -> None:
        if not self.quiet:
            self.err.print(f"[yellow]warning:[/] {_shown(message)}")

    def download_notice(self, event: DownloadEvent) -> None:
        """A download's retry (a warning) or its wait for another process (a line); bytes are left to
        the progress displays."""
        if isinstance(event, DownloadRetry):
            until = "the last try" if event.last else f"giving up {event.deadline_s:g} s after the start"
            self.warning(
                f"{event.model}: attempt {event.attempt} failed ({event.reason}); retrying in "
                f"{event.wait_s:.1f} s ({until})"
            )
        elif isinstance(event, DownloadWaiting):
            self.info(f"{event.model}: waiting for another process {event.doing} {event.path}")

    def error(self, message: str) -> None:
        self.err.print(f"[bold red]error:[/] {_shown(message)}")

    def result(self, record: dict[str, Any]) -> None:
        """One machine-readable result line on stdout (only with ``--json``).

        The JSON is ASCII (other characters escaped), so any file name survives any locale. When stdout
        fails (closed, its reader gone, a full disk) the records stop and the work goes on; the command
        line reports that failure once, at the end (:func:`swinir_cli.stdout.deferred_failure`).
        """
        if self.json_lines:
            try:
                write_stdout((json.dumps(record) + "\n").encode("ascii"))
            except StdoutError as error:
                defer_failure(error)

    def data(self, renderable: Any) -> None:
        """Print ``renderable`` (a table) on stdout, whole or not at all.

        Raises:
            StdoutError: stdout is closed, its reader went away or its disk is full.
        """
        rendered = io.StringIO()
        Console(
            file=rendered,
            width=self.out.width,
            color_system=self.out.color_system,
            force_terminal=self.out.is_terminal,
            highlight=False,
            soft_wrap=True,
        ).print(renderable)
        encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
        write_stdout(rendered.getvalue().encode(encoding, errors="replace"))

    @contextmanager
    def progress(
        self, description: str, total: float | None, *, unit: str = "tiles"
    ) -> Iterator[ProgressTask]:
        """A progress bar (terminal) or periodic plain lines (pipes); nothing when quiet.

        ``unit == "bytes"`` shows sizes and transfer rate; otherwise counts and rate per second.
        """
        if not self.interactive:
            yield ProgressTask(None, None, description, self, unit)
            return
        if unit == "bytes":
            columns = [
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
            ]
        else:
            columns = [
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(unit),
                TaskProgressColumn(),
                TimeRemainingColumn(),
            ]
        with Progress(*columns, console=self.err, transient=True) as bar:
            task_id = bar.add_task(_shown(description), total=total)
            yield ProgressTask(bar, task_id, description, self, unit)

    @contextmanager
    def batch_progress(self, total_images: int, *, workers: int = 1) -> Iterator[BatchProgress]:
        """Progress of a batch: images done with ETA, and the current image's tiles (or a download).

        On a terminal: two live bars. Otherwise: a line as each image starts and a line now and then while
        a long image runs. Nothing when quiet. ``workers``: images restored at once (worker processes
        or actors), which divides the time left.
        """
        if not self.interactive:
            yield BatchProgress(self, None, total_images, workers)
            return
        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            AmountColumn(),
            RateColumn(),
            EtaColumn(),
        ]
        with Progress(*columns, console=self.err, transient=True) as bar:
            yield BatchProgress(self, bar, total_images, workers)


class AmountColumn(ProgressColumn):
    """``3/12 tiles``, ``2/5 images`` or ``1.0/10.5 MB``."""

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "")
        if unit == "running":
            return Text("running")
        if unit == "bytes":
            return Text(_megabytes(task.completed, task.total))
        total = "?" if task.total is None else f"{task.total:.0f}"
        return Text(f"{task.completed:.0f}/{total} {unit}")


class EtaColumn(TimeRemainingColumn):
    """The time left: the task's own ``eta`` field (seconds at the time ``eta_at``, counting down since)
    when it has one, else rich's estimate."""

    def render(self, task: Task) -> Text:
        eta = task.fields.get("eta")
        if eta is None:
            return super().render(task)
        since = time.monotonic() - task.fields.get("eta_at", time.monotonic())
        return Text(_clock(eta - since), style="progress.remaining")


def _clock(seconds: float) -> str:
    left = max(0, int(seconds))
    return (
        f"{left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}"
        if left >= 3600
        else f"{left // 60}:{left % 60:02d}"
    )


def _megabytes(done: float, total: float | None) -> str:
    return f"{done / 1e6:.1f}/{total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"


class RateColumn(ProgressColumn):
    """Speed of a task in its own unit: ``2.4 tiles/s``, ``0.3 images/s``, ``11.2 MB/s``."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if not speed:
            return Text("")
        unit = task.fields.get("unit", "")
        if unit == "bytes":
            return Text(f"{speed / 1e6:.1f} MB/s")
        return Text(f"{speed:.2f} {unit}/s" if speed < 10 else f"{speed:.0f} {unit}/s")


def _rate_and_eta(done: float, total: float | None, seconds: float, unit: str) -> str:
    """`` at 2.4 tiles/s, 0:12 left`` for plain log lines; empty until something is done."""
    if done <= 0 or seconds <= 0:
        return ""
    rate = done / seconds
    shown = f"{rate / 1e6:.1f} MB/s" if unit == "bytes" else f"{rate:.2f} {unit}/s"
    if not total:
        return f" at {shown}"
    return f" at {shown}, {_clock((total - done) / rate)} left"


class BatchProgress:
    """Reports a batch as it runs; see :meth:`Output.batch_progress`.

    Rates and times left count only restoring: a download has its own rate, and the batch's time left
    is the mean time of the images restored so far (skipped and failed ones do not count) times the images
    left, divided by ``workers`` (images restored at once), known once an image is written; on a terminal
    it counts down between images.

    Plain lines (no terminal): ``[n/N] input -> output (seconds, time left)`` as each image of a batch is
    written; tile lines (every few seconds) only for a single image, so that no image of a batch gets them
    and another not; download lines always. On a terminal, the bar of images, and below it a bar for the
    running image (its tiles or download), or with several workers one row per running image.
    """

    def __init__(self, output: Output, bar: Progress | None, total_images: int, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self._output = output
        self._bar = bar
        self._total = total_images
        self._workers = workers
        self._name = ""
        self._unit = "tiles"
        self._last_line = self._work_started = self._image_started = time.monotonic()
        self._finished = 0
        self._restored: list[float] = []  # seconds of each image restored so far
        self._running: dict[str, Any] = {}  # input name -> its row (several workers) or None
        if bar is not None:
            self._images = bar.add_task("images", total=total_images, unit="images", eta=None)
            self._work = bar.add_task("", total=None, unit="tiles", visible=False)

    def start(self, index: int, input_name: str, output_name: str) -> None:
        """Image ``index`` (from 0) begins (its output is named when it is written)."""
        self._name = input_name
        self._unit = "tiles"
        self._last_line = self._work_started = self._image_started = time.monotonic()
        if self._bar is None:
            return
        if self._workers > 1:
            self._running[input_name] = self._bar.add_task(_shown(input_name), total=None, unit="running")
            return
        self._running[input_name] = None
        self._bar.reset(self._work, description=_shown(input_name), total=None, unit="tiles", visible=True)

    def tiles(self, done: int, total: int) -> None:
        """``done`` of ``total`` tiles of the current image are restored."""
        self._update(done, total, "tiles", f"{self._name}: {done}/{total} tiles")

    def download(self, event: DownloadEvent) -> None:
        """Bytes of a model's weights have arrived (the live bar), or a retry or a wait (one line)."""
        if not isinstance(event, DownloadProgress):
            self._output.download_notice(event)
            return
        name, done, total = event.model, event.done, event.total
        self._update(
            done, total, "bytes", f"downloading {name}: {_megabytes(done, total)}", f"downloading {name}"
        )

    def finished(
        self, status: str = "done", seconds: float | None = None, names: tuple[str, str] | None = None
    ) -> None:
        """One more image is ``done``, ``skipped`` or ``failed``; ``seconds``: its work time (default: since
        it started; with overlapped I/O the next image starts before this one is written); ``names``: its
        (input, output), named in a line when it was written in a batch."""
        self._finished += 1
        if status == "done":
            self._restored.append(time.monotonic() - self._image_started if seconds is None else seconds)
        eta = self.batch_eta()
        if names is not None and status == "done" and self._total > 1:
            self._written(*names, self._restored[-1], eta)
        if self._bar is None:
            return
        self._bar.update(self._images, advance=1, eta=eta, eta_at=time.monotonic())
        row = self._running.pop(names[0], None) if names is not None else None
        if row is not None:
            self._bar.remove_task(row)
        if not self._running or names is None:
            self._bar.update(self._work, visible=False)

    def batch_eta(self) -> float | None:
        """Seconds the images left should take, once an image was restored; None before."""
        if not self._restored:
            return None
        mean = sum(self._restored) / len(self._restored)
        return mean * (self._total - self._finished) / self._workers

    def _written(self, input_name: str, output_name: str, seconds: float, eta: float | None) -> None:
        if self._bar is not None:
            self._output.info(f"{input_name} -> {output_name} ({seconds:.1f} s)")
            return
        left = f", {_clock(eta)} left" if eta else ""
        self._output.info(
            f"[{self._finished}/{self._total}] {input_name} -> {output_name} ({seconds:.1f} s{left})"
        )

    def _update(
        self, done: float, total: float | None, unit: str, line: str, label: str | None = None
    ) -> None:
        if unit != self._unit:  # a download ended or began: its time is not the tiles' time
            self._unit = unit
            self._work_started = time.monotonic()
            if unit == "tiles":
                self._image_started = self._work_started
            if self._bar is not None:
                self._bar.reset(self._work, total=total, unit=unit, description=_shown(label or self._name))
        if self._bar is not None:
            self._bar.update(self._work, completed=done, total=total, unit=unit)
            return
        now = time.monotonic()
        if unit == "tiles" and self._total > 1:
            return
        if now - self._last_line >= PLAIN_PROGRESS_INTERVAL:
            self._last_line = now
            percent = f" ({100 * done / total:.0f}%)" if total else ""
            self._output.info(line + percent + _rate_and_eta(done, total, now - self._work_started, unit))


class ProgressTask:
    """Updates one progress display; without a bar, logs a plain line now and then."""

    def __init__(
        self, bar: Progress | None, task_id: Any, description: str, output: Output, unit: str = "tiles"
    ) -> None:
        self._bar = bar
        self._unit = unit
        self._task_id = task_id
        self._description = description
        self._output = output
        self._last_line = time.monotonic()

    def update(self, completed: float, total: float | None = None) -> None:
        if self._bar is not None:
            self._bar.update(self._task_id, completed=completed, total=total)
            return
        now = time.monotonic()
        if now - self._last_line >= PLAIN_PROGRESS_INTERVAL and total:
            self._last_line = now
            shown = _megabytes(completed, total) if self._unit == "bytes" else f"{completed:g}/{total:g}"
            self._output.info(f"{self._description}: {shown} ({100 * completed / total:.0f}%)")
