"""Intake's Kafka edge: decoded problem request -> :func:`accept` -> job envelope.

Invalid requests are not handled here: :func:`accept` raises a typed
``InvalidProblemError`` and the :class:`~qbridge.bus.BusConsumer` dead-letters the
original bytes with the reason (error class ``invalid_input``), then moves on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter

from intake.dedup import RecentlyAccepted, Seen
from qbridge.bus import BusConsumer, BusProducer, Record
from qbridge.bus import headers as h
from qbridge.contracts.registry import SchemaRegistry
from qbridge.errors import InvalidProblemError
from qbridge.metrics import MESSAGES_CONSUMED, STAGE_DURATION
from qbridge.problems.limits import Limits
from qbridge.service import log_context
from qbridge.topics import TopicSpec
from qbridge.validation.accept import RequestBounds, accept

logger = logging.getLogger(__name__)

SERVICE = "intake"

DUPLICATES = Counter(
    "qbridge_intake_duplicates_total",
    "Exact duplicate requests recognized in-process and not re-emitted.",
)
KEY_CONFLICTS = Counter(
    "qbridge_intake_idempotency_conflicts_total",
    "Requests reusing a recent idempotency key for a different problem (same job id).",
)


def writer_version(registry: SchemaRegistry, schema_id: int | None) -> int:
    """Version of the schema a message was written with (0 if unknown)."""
    if schema_id is None:
        return 0
    entry = registry.by_id(schema_id)
    if entry.version > 0:
        return entry.version
    latest = registry.latest(entry.subject)  # a remote registry may not say: compare ids
    return latest.version if latest.schema_id == schema_id else 0


class IntakeApp:
    """Consumes problem requests, produces job envelopes keyed by job id."""

    def __init__(
        self,
        consumer: BusConsumer,
        producer: BusProducer,
        accepted_topic: TopicSpec,
        *,
        limits: Limits,
        bounds: RequestBounds,
        recent: RecentlyAccepted | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """Wire the app.

        Args:
            consumer: Subscribed to the problem-request topic; its DLQ takes rejects.
            producer: Producer of envelopes (the consumer flushes it before committing).
            accepted_topic: Where envelopes go.
            limits: Problem size limits.
            bounds: Bounds on the request fields.
            recent: In-process memory of accepted keys (optimization only).
            clock: Source of the acceptance time.
        """
        self.consumer = consumer
        self.producer = producer
        self.accepted_topic = accepted_topic
        self.limits = limits
        self.bounds = bounds
        self.recent = recent if recent is not None else RecentlyAccepted(0)
        self.clock = clock
        self.accepted = 0
        self.duplicates = 0
        self._running = False
        self._last_poll = 0.0
        self._unflushed: dict[tuple[str, str], tuple[str, tuple[str, int, int]]] = {}
        """Accepted in the current batch, not yet flushed: key -> (fingerprint, source)."""

    # --- one message --------------------------------------------------------------------

    def handle(self, record: Record) -> None:
        """Accept one request and emit its envelope (raises for invalid input)."""
        req = record.value
        schema_id = record.schema_id or None
        with log_context(
            request_id=str(req.get("request_id")),
            correlation_id=req.get("correlation_id") or record.correlation_id,
        ):
            started = time.perf_counter()
            try:
                envelope = accept(
                    req,
                    self.clock(),
                    self.limits,
                    bounds=self.bounds,
                    schema_version=writer_version(self.consumer.codec.registry, schema_id),
                )
            except InvalidProblemError as exc:
                logger.warning("rejected request: %s", exc)
                raise
            finally:
                STAGE_DURATION.labels(SERVICE, "validate").observe(time.perf_counter() - started)
            self._emit(record, envelope)

    def _emit(self, record: Record, envelope: dict[str, Any]) -> None:
        job_id = envelope["job_id"]
        tenant, key = envelope["tenant"], envelope["idempotency_key"]
        fp = envelope["input_fingerprint"]
        with log_context(job_id=job_id, correlation_id=envelope["correlation_id"]):
            seen = self.recent.check(tenant, key, fp)
            source = (record.topic, record.partition, record.offset)
            pending = self._unflushed.get((tenant, key))
            if seen is Seen.NEW and pending is not None and pending[1] != source:
                # Accepted earlier in this batch, not yet durable: the same rules apply.
                # (The same source offset is a re-delivery after a failed flush: emit it.)
                seen = Seen.DUPLICATE if pending[0] == fp else Seen.CONFLICT
            if seen is Seen.DUPLICATE:
                DUPLICATES.inc()
                self.duplicates += 1
                MESSAGES_CONSUMED.labels(SERVICE, record.topic, "duplicate").inc()
                logger.info("duplicate of a recently accepted job: not re-emitted")
                return
            if seen is Seen.CONFLICT:
                KEY_CONFLICTS.inc()
                logger.warning(
                    "idempotency key reused for a different problem: same job id, "
                    "the first accepted problem wins"
                )
            headers = h.propagate(
                record.headers,
                **{h.CORRELATION_ID: envelope["correlation_id"], h.JOB_ID: job_id},
            )
            self.producer.send(self.accepted_topic, envelope, key=job_id, headers=headers)
            # Remembered only once durable (the consumer flushes the batch, then calls
            # on_flushed): a failed delivery must not turn the retry of this very message
            # into a "duplicate".
            if self.recent.maxsize > 0:
                self._unflushed.setdefault((tenant, key), (fp, source))
            self.accepted += 1
            logger.info(
                "accepted %s job (%s variables, policy %s, priority %s)",
                envelope["problem_type"],
                envelope["num_variables"],
                envelope["fallback_policy"],
                envelope["priority"],
            )

    # --- loop ---------------------------------------------------------------------------

    def run(self) -> None:
        """Consume until :meth:`stop`; the message in hand is finished first."""
        self._running = True
        self._last_poll = time.monotonic()
        try:
            self.consumer.run(self.handle, on_idle=self._tick, on_flushed=self.on_flushed)
        finally:
            self._running = False

    def on_flushed(self) -> None:
        """Called by the consumer once the batch's envelopes are durable (flushed).

        Their keys are remembered for in-process deduplication only now.
        """
        for (tenant, key), (fp, _) in self._unflushed.items():
            self.recent.remember(tenant, key, fp)
        self._unflushed.clear()

    def _tick(self) -> None:
        self._last_poll = time.monotonic()

    def stop(self) -> None:
        """Ask :meth:`run` to return (thread- and signal-safe)."""
        self.consumer.stop()

    def ready(self) -> tuple[bool, str]:
        """Ready while the loop runs and polls."""
        if not self._running:
            return False, "not consuming"
        if time.monotonic() - self._last_poll > 60:
            return False, "consumer loop stalled"
        return True, f"accepted={self.accepted} duplicates={self.duplicates}"

    def close(self) -> None:
        """Commit stored offsets, leave the group, flush the producer."""
        self.consumer.close()
        self.producer.close()
