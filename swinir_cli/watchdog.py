"""A watchdog that bounds one HTTP exchange in time, and how one transfer attempt can stop early.

A socket timeout bounds each wait for bytes, not an exchange that keeps trickling, nor a TLS handshake or
a status line that never completes. :class:`Watchdog` shuts the attempt's connections once its time is
up, wherever the exchange is blocked, and reports the failure this causes as :class:`TransferStalled`.
"""

from __future__ import annotations

import http.client
import socket
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["TransferInterrupted", "TransferStalled", "Watchdog"]


class TransferInterrupted(Exception):
    """One attempt stopped early for a reason another attempt may not meet."""


class TransferStalled(TransferInterrupted):
    """One attempt received too little to count as progress (a trickle or a stall)."""


class Watchdog:
    """Bounds one attempt as a whole: once its time is up, it shuts the attempt's connections, wherever
    the exchange is blocked (TLS handshake, status line, headers, body), and :meth:`converting` turns
    the failure this causes into :class:`TransferStalled` saying why. Connecting itself is bounded by
    the socket timeout."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._descriptors: list[int] = []
        self._generation = 0
        self._armed = False
        self._timer: threading.Timer | None = None
        self.fired: str | None = None

    def arm(self, seconds: float, reason: str) -> None:
        """Fire ``seconds`` from now (replacing an earlier time), saying ``reason``."""
        with self._lock:
            self._stop_timer()
            self._generation += 1
            self._armed = True
            self._timer = threading.Timer(max(seconds, 0.0), self._fire, (self._generation, reason))
            self._timer.daemon = True
            self._timer.start()

    def disarm(self) -> None:
        """Never fire from now on (waits for a firing under way to finish)."""
        with self._lock:
            self._armed = False
            self._stop_timer()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def opener(self) -> urllib.request.OpenerDirector:
        """A urllib opener (proxies and redirects as usual) whose connections this watchdog watches."""
        watchdog = self

        class WatchedHTTP(urllib.request.HTTPHandler):
            def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
                return self.do_open(watchdog._connection(http.client.HTTPConnection), req)

        class WatchedHTTPS(urllib.request.HTTPSHandler):
            def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
                return self.do_open(
                    watchdog._connection(http.client.HTTPSConnection), req, context=self._context
                )

        return urllib.request.build_opener(WatchedHTTP, WatchedHTTPS)

    @contextmanager
    def converting(self) -> Iterator[None]:
        """Report what a fired watchdog caused (a reset or a cut connection) as the stall it is."""
        try:
            yield
        except (OSError, http.client.HTTPException, TransferInterrupted) as err:
            if self.fired is not None:
                raise TransferStalled(self.fired) from err
            raise
        if self.fired is not None:  # a body without a stated size ends, cut, like a complete one
            raise TransferStalled(self.fired)

    def _connection(self, base: type[http.client.HTTPConnection]) -> type[http.client.HTTPConnection]:
        watch = self._watch

        class Watched(base):  # type: ignore[valid-type, misc]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                create = self._create_connection

                def connect_watched(*args: Any, **kwargs: Any) -> socket.socket:
                    sock = create(*args, **kwargs)
                    watch(sock.fileno())
                    return sock

                self._create_connection = connect_watched

        return Watched

    def _watch(self, descriptor: int) -> None:
        with self._lock:
            self._descriptors.append(descriptor)
            if self.fired is not None:
                _shut(descriptor)

    def _fire(self, generation: int, reason: str) -> None:
        with self._lock:
            if not self._armed or generation != self._generation:
                return
            self.fired = reason
            for descriptor in self._descriptors:
                _shut(descriptor)


def _shut(descriptor: int) -> None:
    """Shut a connected socket down by its descriptor (the TLS layer over it, holding the same
    descriptor, then reads an end of file); anything else is left alone."""
    try:
        sock = socket.socket(fileno=descriptor)
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.detach()
