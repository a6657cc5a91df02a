"""A small HTTP endpoint per service: ``/metrics`` (Prometheus), ``/healthz``, ``/readyz``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app

logger = logging.getLogger(__name__)

StartResponse = Callable[..., Any]


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class HttpEndpoint:
    """Serves metrics and health in a background thread."""

    def __init__(
        self,
        host: str,
        port: int,
        ready: Callable[[], tuple[bool, str]],
        registry: CollectorRegistry = REGISTRY,
        extra: dict[str, Callable[[dict[str, Any], StartResponse], Iterable[bytes]]] | None = None,
        live: Callable[[], tuple[bool, str]] | None = None,
    ) -> None:
        """Bind the server (not yet serving).

        Args:
            host: Bind address.
            port: Port, 0 for a free one (see :attr:`port`).
            ready: Returns ``(ready, detail)`` for ``/readyz``.
            registry: Prometheus registry to expose.
            extra: More WSGI apps by exact path (e.g. a dashboard).
            live: Returns ``(alive, detail)`` for ``/healthz`` (default: always alive);
                not alive means the process cannot recover by itself (restart it).
        """
        self._live = live or (lambda: (True, "ok"))
        self._metrics = make_wsgi_app(registry)
        self._ready = ready
        self._extra = extra or {}
        self._server = make_server(
            host, port, self._app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
        )
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return self._metrics(environ, start_response)
        if path == "/healthz":
            alive, why = self._live()
            start_response(
                "200 OK" if alive else "503 Service Unavailable", [("Content-Type", "text/plain")]
            )
            return [(why or ("ok" if alive else "not alive")).encode() + b"\n"]
        if path == "/readyz":
            ok, detail = self._ready()
            start_response(
                "200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")]
            )
            return [(detail or ("ready" if ok else "not ready")).encode() + b"\n"]
        if path in self._extra:
            return self._extra[path](environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    def start(self) -> None:
        """Serve in the background."""
        self._thread.start()
        logger.info("metrics and health on port %d", self.port)

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
