"""The dashboard as a WSGI app: ``/dashboard`` (HTML) and ``/api/summary`` (JSON).

Mounted on a service's metrics/health endpoint (the results sink's), so the
system serves it without Grafana::

    dash = DashboardApp(pool.connection, lag=KafkaLag(settings.kafka))
    runtime.serve(..., extra=dash.routes())

Query parameters (both paths): ``window`` (minutes, default from settings),
``limit`` (recent jobs), ``refresh`` (page auto-refresh seconds, 0 = off).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

from pydantic_settings import BaseSettings, SettingsConfigDict

from qbridge.bus.lag_monitor import LagSnapshot
from qbridge.dashboard.page import render_page
from qbridge.dashboard.summary import Connect, Thresholds, build_summary

logger = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

PAGE_PATHS = ("/dashboard", "/dashboard/")
API_PATH = "/api/summary"


class DashboardSettings(BaseSettings):
    """Dashboard settings (environment, prefix ``QBRIDGE_``).

    The two thresholds are the orchestrator's own settings, read under the same
    names so one ConfigMap / ``.env`` feeds both (the lag chart draws them).

    Attributes:
        dashboard_enabled: Mount the dashboard at all.
        dashboard_window_min: Default window of the aggregates, minutes.
        dashboard_recent_jobs: Default number of recent jobs listed.
        dashboard_refresh_s: Default auto-refresh of the page (0 = off).
        degrade_quantum_lag: The orchestrator's ``QBRIDGE_DEGRADE_QUANTUM_LAG``.
        pause_low_priority_lag: The orchestrator's ``QBRIDGE_PAUSE_LOW_PRIORITY_LAG``.
    """

    model_config = SettingsConfigDict(env_prefix="QBRIDGE_", extra="ignore")

    dashboard_enabled: bool = True
    dashboard_window_min: int = 60
    dashboard_recent_jobs: int = 25
    dashboard_refresh_s: int = 15
    degrade_quantum_lag: int = 20
    pause_low_priority_lag: int = 200


def _int_param(query: dict[str, list[str]], name: str, default: int, lo: int, hi: int) -> int:
    try:
        value = int(query.get(name, [str(default)])[0])
    except ValueError:
        return default
    return min(hi, max(lo, value))


class DashboardApp:
    """Serves the dashboard page and its JSON from the results database."""

    def __init__(
        self,
        connect: Connect,
        lag: Callable[[], LagSnapshot] | None = None,
        settings: DashboardSettings | None = None,
    ) -> None:
        """Wire the data sources.

        Args:
            connect: Connection factory of the results database (``pool.connection``).
            lag: Returns the current consumer-group lag (e.g. :class:`KafkaLag`).
            settings: Defaults and thresholds (default: from the environment).
        """
        self.connect = connect
        self.lag = lag
        self.settings = settings or DashboardSettings()
        self.thresholds = Thresholds(
            degrade_quantum_lag=self.settings.degrade_quantum_lag,
            pause_low_priority_lag=self.settings.pause_low_priority_lag,
        )

    def routes(self) -> dict[str, WsgiApp]:
        """WSGI apps by exact path, for ``HttpEndpoint(extra=...)``."""
        if not self.settings.dashboard_enabled:
            return {}
        return {**dict.fromkeys(PAGE_PATHS, self.page), API_PATH: self.api}

    def summary(self, window_min: int, limit: int) -> dict[str, Any]:
        """The data of the page (raises if the database cannot be read)."""
        lag = None
        if self.lag is not None:
            try:
                lag = self.lag()
            except Exception as exc:  # lag is optional on the page
                logger.warning("reading lag failed: %s", exc)
                lag = LagSnapshot(error=str(exc))
        return build_summary(
            self.connect,
            window=timedelta(minutes=window_min),
            limit=limit,
            lag=lag,
            thresholds=self.thresholds,
        )

    def _params(self, environ: dict[str, Any]) -> tuple[int, int, int]:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        s = self.settings
        return (
            _int_param(query, "window", s.dashboard_window_min, 1, 7 * 24 * 60),
            _int_param(query, "limit", s.dashboard_recent_jobs, 1, 500),
            _int_param(query, "refresh", s.dashboard_refresh_s, 0, 3600),
        )

    def api(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """``GET /api/summary``: the summary as JSON (503 if the database is down)."""
        window_min, limit, _ = self._params(environ)
        try:
            body: dict[str, Any] = self.summary(window_min, limit)
            status = "200 OK"
        except Exception as exc:
            logger.warning("dashboard summary failed: %s", exc)
            body, status = {"error": f"{type(exc).__name__}: {exc}"}, "503 Service Unavailable"
        data = json.dumps(body, default=str).encode()
        start_response(
            status,
            [
                ("Content-Type", "application/json"),
                ("Cache-Control", "no-store"),
                ("Content-Length", str(len(data))),
            ],
        )
        return [data]

    def page(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """``GET /dashboard``: the HTML page (an error page with 503 if the database is down)."""
        window_min, limit, refresh_s = self._params(environ)
        try:
            html = render_page(
                self.summary(window_min, limit), window_min=window_min, refresh_s=refresh_s
            )
            status = "200 OK"
        except Exception as exc:
            logger.warning("dashboard page failed: %s", exc)
            html = render_page(
                None,
                window_min=window_min,
                refresh_s=refresh_s,
                error=f"{type(exc).__name__}: {exc}",
            )
            status = "503 Service Unavailable"
        data = html.encode()
        start_response(
            status,
            [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Cache-Control", "no-store"),
                (
                    "Content-Security-Policy",
                    "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
                ),
                ("X-Content-Type-Options", "nosniff"),
                ("Content-Length", str(len(data))),
            ],
        )
        return [data]
