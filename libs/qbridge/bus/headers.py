"""Kafka headers the platform understands: correlation, trace context, DLQ metadata.

Trace context follows W3C ``traceparent`` (``00-<trace id>-<span id>-01``), so any
OpenTelemetry-aware consumer can continue the trace.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

CORRELATION_ID = "qbridge-correlation-id"
JOB_ID = "qbridge-job-id"
TRACEPARENT = "traceparent"

DLQ_ERROR_CLASS = "qbridge-dlq-error-class"
DLQ_ERROR_TYPE = "qbridge-dlq-error-type"
DLQ_REASON = "qbridge-dlq-reason"
DLQ_SOURCE_TOPIC = "qbridge-dlq-source-topic"
DLQ_SOURCE_PARTITION = "qbridge-dlq-source-partition"
DLQ_SOURCE_OFFSET = "qbridge-dlq-source-offset"
DLQ_ATTEMPT = "qbridge-dlq-attempt"
DLQ_SERVICE = "qbridge-dlq-service"

HeaderList = list[tuple[str, bytes]]


RawHeaders = Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None


def to_dict(headers: RawHeaders) -> dict[str, bytes]:
    """Kafka's headers as a dict of bytes (last value wins; ``None`` becomes empty)."""
    items = headers.items() if isinstance(headers, Mapping) else (headers or [])
    return {k: (v.encode() if isinstance(v, str) else (v or b"")) for k, v in items}


def to_list(headers: Mapping[str, str | bytes]) -> HeaderList:
    """A dict of headers as Kafka's list of ``(key, bytes)``."""
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in headers.items()]


def _span_id() -> str:
    # Trace ids need uniqueness, not secrecy: random.getrandbits, as OpenTelemetry's id
    # generator uses, costs a fraction of secrets' urandom syscall on every message.
    # All zeros is an invalid id in W3C trace context.
    return f"{random.getrandbits(64) or 1:016x}"


def new_traceparent() -> str:
    """Start a new trace."""
    return f"00-{random.getrandbits(128) or 1:032x}-{_span_id()}-01"


def child_traceparent(parent: str | bytes | None) -> str:
    """Continue ``parent``'s trace with a new span id (or start a new trace)."""
    if isinstance(parent, bytes):
        parent = parent.decode(errors="replace")
    parts = (parent or "").split("-")
    if len(parts) == 4 and len(parts[1]) == 32 and len(parts[2]) == 16:
        return f"{parts[0]}-{parts[1]}-{_span_id()}-{parts[3]}"
    return new_traceparent()


def propagate(incoming: Mapping[str, bytes], **extra: str) -> HeaderList:
    """Headers for a message caused by ``incoming``: same correlation id, child span."""
    out: dict[str, str | bytes] = {}
    if CORRELATION_ID in incoming:
        out[CORRELATION_ID] = incoming[CORRELATION_ID]
    out[TRACEPARENT] = child_traceparent(incoming.get(TRACEPARENT))
    out.update(extra)
    return to_list(out)
