"""Settings every service has (environment, no prefix); services subclass it."""

from __future__ import annotations

from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Common service settings.

    Attributes:
        log_level: Root log level.
        log_format: ``json`` (one object per line, for log pipelines) or ``text``.
        http_host: Bind address of the metrics/health endpoint.
        http_port: Port of ``/metrics``, ``/healthz`` and ``/readyz`` (0 picks a free one).
        shutdown_grace_s: How long SIGTERM waits for in-flight work before exiting.
    """

    model_config = SettingsConfigDict(env_prefix="QBRIDGE_", extra="ignore")

    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    http_host: str = "0.0.0.0"
    http_port: int = 0
    shutdown_grace_s: float = 25.0
