"""Structured logging with job and correlation ids taken from a context variable."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("qbridge_log_context")


@contextlib.contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Add fields (e.g. ``job_id``, ``correlation_id``) to every log record in this block."""
    current = _context.get({})
    token = _context.set({**current, **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.qbridge_context = _context.get({})
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, service, context fields."""

    def __init__(self, service: str) -> None:
        """Create a formatter that stamps ``service`` on every line."""
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(getattr(record, "qbridge_context", {}))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        ctx = getattr(record, "qbridge_context", {})
        return base + ("".join(f" {k}={v}" for k, v in ctx.items()) if ctx else "")


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Configure the root logger once for a service process."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(
            _TextFormatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # librdkafka and Qiskit are chatty at INFO.
    for noisy in ("qiskit", "stevedore", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
