"""Starting and stopping the server: :func:`serve` (blocking, what the CLI calls) and :class:`Server` (in a
background thread, for notebooks and tests).

Why tornado: it is already installed (a fixed dependency of dask's ``distributed``), it is the server the Dask
dashboard, Jupyter and Bokeh serve such local tools with, it has the thread-pool hand-off that keeps the API
answering while a probe trains, and its ``websocket_connect`` client drives Chromium's DevTools protocol in the
browser test. An ASGI app would need uvicorn (or another server) and a framework on top: new dependencies for
the same result.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ofa_embed.labelling.labelbook import LabelBook
from ofa_embed.location import AnyPath, RemotePath, as_location
from ofa_embed.progress import ProgressCallback

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "Server", "ServeInfo", "is_loopback", "log_request", "open_warning"]

logger = logging.getLogger(__name__)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def log_request(handler: Any) -> None:
    """Tornado's access log, one level lower for a client's bad request: a 4xx answers it with its own one-line
    message, and is not the server's problem; a 5xx is.
    """
    status = handler.get_status()
    level = logging.ERROR if status >= 500 else logging.INFO if status >= 400 else logging.DEBUG
    request = handler.request
    logging.getLogger("tornado.access").log(level, "%d %s %s %.1f ms", status, request.method, request.uri,
                                            1000 * request.request_time())


@dataclass(frozen=True)
class ServeInfo:
    """Where a started server answers: ``url`` (``http://host:port/``), ``host``, ``port``, the store's tile count."""

    url: str
    host: str
    port: int
    tiles: int


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_warning(host: str) -> str | None:
    """The warning for a host other than loopback (None for loopback)."""
    if is_loopback(host):
        return None
    return (f"serving on {host}: anyone who can reach this machine on that network can read the store's tiles and "
            "imagery and write its labels (there is no login); use the default 127.0.0.1 unless you mean this")


class Server:
    """The server on its own thread and event loop: :meth:`start` returns once it answers, :meth:`stop` ends it."""

    def __init__(self, store: str | AnyPath, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                 build_index: bool = True, on_progress: ProgressCallback | None = None) -> None:
        """Open the store (tiles, index, labels) now; nothing listens until :meth:`start` or :meth:`run`.

        Raises:
            StoreError: missing, empty or remote store; an unreadable labels file.
            IndexStateError: no usable index and ``build_index`` False.
        """
        from ofa_embed.labelling.api import ServeState
        from ofa_embed.labelling.quicklook import Quicklooks
        from ofa_embed.labelling.session import StoreSession

        location = as_location(store)
        if isinstance(location, RemotePath):
            from ofa_embed.errors import StoreError

            raise StoreError(f"{store}: serve needs a local store folder (labels are written beside the tiles)")
        root = Path(location)
        session = StoreSession(root, build_index=build_index, on_progress=on_progress)
        self.state = ServeState(session, LabelBook(root), Quicklooks(root, session.files))
        self.host, self.port = host, port
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.stopped: asyncio.Event | None = None
        self.info: ServeInfo | None = None

    def _listen(self) -> ServeInfo:
        import tornado.httpserver
        import tornado.netutil
        import tornado.web

        from ofa_embed.labelling.api import MAX_BODY, routes

        app = tornado.web.Application(routes(self.state), default_handler_class=_not_found(),
                                      default_handler_args={"state": self.state}, compress_response=False,
                                      log_function=log_request)
        sockets = tornado.netutil.bind_sockets(self.port, self.host)
        http = tornado.httpserver.HTTPServer(app, max_body_size=MAX_BODY)
        http.add_sockets(sockets)
        port = sockets[0].getsockname()[1]
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return ServeInfo(f"http://{shown}:{port}/", self.host, port, self.state.session.count)

    async def _main(self, ready: Callable[[ServeInfo], None]) -> None:
        self.stopped = asyncio.Event()
        self.info = self._listen()
        ready(self.info)
        await self.stopped.wait()

    def run(self, ready: Callable[[ServeInfo], None] | None = None) -> None:
        """Serve on this thread until interrupted (Ctrl-C) or :meth:`stop`; ``ready(info)`` once it listens."""
        def started(info: ServeInfo) -> None:
            self.loop = asyncio.get_running_loop()
            if ready:
                ready(info)

        try:
            asyncio.run(self._main(started))
        finally:
            self.state.pool.shutdown(wait=False, cancel_futures=True)
            self.state.quicklooks.close()

    def start(self) -> ServeInfo:
        """Serve on a background thread; returns once it listens.

        Raises:
            OSError: the port is taken.
        """
        up = threading.Event()
        failure: list[BaseException] = []

        def target() -> None:
            try:
                self.run(lambda info: up.set())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller of start()
                failure.append(exc)
                up.set()

        self.thread = threading.Thread(target=target, name="ofa-serve", daemon=True)
        self.thread.start()
        up.wait()
        if failure:
            raise failure[0]
        assert self.info is not None
        return self.info

    def stop(self) -> None:
        """Stop serving (from any thread) and wait for the server's thread."""
        if self.loop is not None and self.stopped is not None:
            self.loop.call_soon_threadsafe(self.stopped.set)
        if self.thread is not None:
            self.thread.join(timeout=30)


def _not_found() -> type:
    from ofa_embed.labelling.api import NotFound

    return NotFound
