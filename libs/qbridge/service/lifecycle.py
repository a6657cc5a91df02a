"""Process lifecycle: logging, the HTTP endpoint, and graceful SIGTERM/SIGINT."""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable, Mapping
from types import FrameType
from typing import Any

from qbridge.service.http import HttpEndpoint, StartResponse
from qbridge.service.logs import configure_logging
from qbridge.service.settings import ServiceSettings

logger = logging.getLogger(__name__)


def freeze_startup_heap() -> int:
    """Keep what start-up allocated out of every later garbage collection.

    A full collection walks every tracked object; with the solver and protobuf modules
    imported that is over 100,000 objects and 25-65 ms on this kind of machine, during
    which no thread of the process runs: one in a few hundred calls then answers tens
    of milliseconds late. Modules, schemas and warmed-up caches live as long as the
    process, so after start-up they are moved to the permanent generation (``gc.freeze``,
    as large Python services do); later full collections only walk what came after.

    Returns:
        How many objects were frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class ServiceRuntime:
    """Wires the parts every service process needs.

    Usage in a service's ``__main__``::

        runtime = ServiceRuntime("intake", settings)
        app = IntakeApp(...)
        runtime.serve(app.run, stop=app.stop, ready=app.ready)
    """

    def __init__(self, name: str, settings: ServiceSettings) -> None:
        """Configure logging for service ``name``."""
        self.name = name
        self.settings = settings
        configure_logging(name, settings.log_level, settings.log_format)
        self.stopping = threading.Event()

    def serve(
        self,
        run: Callable[[], None],
        stop: Callable[[], None],
        ready: Callable[[], tuple[bool, str]] = lambda: (True, ""),
        on_exit: Callable[[], None] | None = None,
        extra: Mapping[str, Callable[[dict[str, Any], StartResponse], Iterable[bytes]]]
        | None = None,
        live: Callable[[], tuple[bool, str]] | None = None,
    ) -> int:
        """Run ``run`` in the foreground until it returns or a signal arrives.

        On SIGTERM/SIGINT ``stop`` is called; ``run`` is expected to finish the
        work in hand (or hand it back uncommitted) and return. ``on_exit`` closes
        clients afterwards. ``extra`` mounts more WSGI apps on the HTTP endpoint by
        exact path (e.g. the results sink's dashboard). ``live`` answers ``/healthz``
        (default: alive while the process answers).

        Returns:
            The process exit code.
        """
        http = HttpEndpoint(
            self.settings.http_host,
            self.settings.http_port,
            ready,
            extra=dict(extra or {}),
            live=live,
        )
        http.start()

        def _on_signal(signum: int, _frame: FrameType | None) -> None:
            if self.stopping.is_set():
                logger.warning("second signal: exiting now")
                raise SystemExit(1)
            grace = self.settings.shutdown_grace_s
            logger.info(
                "%s received: finishing in-flight work (at most %.0fs)",
                signal.Signals(signum).name,
                grace,
            )
            self.stopping.set()
            # Past the grace period the process exits without committing: the message in
            # hand is redelivered to another instance (at-least-once), never lost.
            timer = threading.Timer(grace, _hard_exit, args=(self.name, grace))
            timer.daemon = True
            timer.start()
            stop()

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        code = 0
        try:
            frozen = freeze_startup_heap()
            logger.info("%s started (%d start-up objects kept out of GC)", self.name, frozen)
            run()
        except Exception:
            logger.exception("%s crashed", self.name)
            code = 1
        finally:
            if on_exit is not None:
                try:
                    on_exit()
                except Exception:
                    logger.exception("closing clients failed")
            http.stop()
            logger.info("%s stopped", self.name)
        return code


def _hard_exit(name: str, grace: float) -> None:
    logger.error("%s did not stop within %.0fs: exiting without committing", name, grace)
    logging.shutdown()
    os._exit(1)
