"""Process lifecycle: logging, the HTTP endpoint, and graceful SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

from qbridge.service.http import HttpEndpoint
from qbridge.service.logs import configure_logging
from qbridge.service.settings import ServiceSettings

logger = logging.getLogger(__name__)


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
    ) -> int:
        """Run ``run`` in the foreground until it returns or a signal arrives.

        On SIGTERM/SIGINT ``stop`` is called; ``run`` is expected to finish the
        work in hand (or hand it back uncommitted) and return. ``on_exit`` closes
        clients afterwards.

        Returns:
            The process exit code.
        """
        http = HttpEndpoint(self.settings.http_host, self.settings.http_port, ready)
        http.start()

        def _on_signal(signum: int, _frame: FrameType | None) -> None:
            if self.stopping.is_set():
                logger.warning("second signal: exiting now")
                raise SystemExit(1)
            logger.info("%s received: finishing in-flight work", signal.Signals(signum).name)
            self.stopping.set()
            stop()

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        code = 0
        try:
            logger.info("%s started", self.name)
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
