"""The Kafka side of the sink: route each record by its subject to one store write.

The consumer runs with ``on_exhausted="block"``: while the database is down every
write raises :class:`StoreUnavailableError` (transient), the consumer keeps the
message and retries it with backoff (the assignment paused, group membership kept),
and stores the offset only once the write committed. Nothing is skipped or
dead-lettered because of an outage; only records that can never be stored (invalid
values, code defects) go to the DLQ.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from prometheus_client import Gauge

from qbridge.bus import BusConsumer, Record
from qbridge.errors import ErrorClass, QBridgeError, StoreUnavailableError, classify
from qbridge.metrics import RETRIES, STAGE_DURATION
from qbridge.service import log_context
from results_sink import SERVICE_NAME
from results_sink import mapping as m
from results_sink.store import StoreRow, WriteResult, translate

logger = logging.getLogger(__name__)

DATABASE_UP = Gauge(
    "qbridge_results_sink_database_up",
    "1 if the last database call of the results sink succeeded, else 0.",
)


class UnroutableRecordError(QBridgeError):
    """A record whose subject the sink does not store."""

    error_class = ErrorClass.INVALID_INPUT


class Store(Protocol):
    """What the app needs from :class:`results_sink.store.ResultsStore`."""

    def ping(self, timeout_s: float = 2.0) -> None: ...
    def record_job(self, row: m.JobRow) -> WriteResult: ...
    def record_transition(self, row: m.TransitionRow) -> WriteResult: ...
    def record_attempt(self, row: m.AttemptRow) -> WriteResult: ...
    def record_outcome(self, rows: m.OutcomeRows) -> WriteResult: ...
    def record_batch(self, rows: Sequence[StoreRow]) -> list[WriteResult]: ...
    def record_approval(self, row: m.ApprovalRow) -> WriteResult: ...


class ResultsSinkApp:
    """Handles the sink's records and owns its run loop and readiness."""

    def __init__(
        self,
        store: Store,
        consumer: BusConsumer | None = None,
        *,
        migrate: Callable[[], object] | None = None,
        service: str = SERVICE_NAME,
        startup_backoff_s: float = 0.5,
        max_startup_backoff_s: float = 10.0,
    ) -> None:
        """Create the app.

        Args:
            store: Where records go.
            consumer: The Kafka consumer (not needed to call :meth:`handle` directly).
            migrate: Applies the schema; run (with retries while the database is
                unreachable) before consuming starts.
            service: Service name for metrics and logs.
            startup_backoff_s: First wait between start-up attempts (doubles).
            max_startup_backoff_s: Cap of that wait.
        """
        self.store = store
        self.consumer = consumer
        self.service = service
        self._migrate = migrate
        self._startup_backoff_s = startup_backoff_s
        self._max_startup_backoff_s = max_startup_backoff_s
        self._stop = threading.Event()
        self._started = threading.Event()
        self._rows: dict[str, Callable[[dict[str, Any]], StoreRow]] = {
            m.JOB_ENVELOPE: m.job_row,
            m.JOB_STATUS_TRANSITION: m.transition_row,
            m.SOLVER_OUTCOME: m.attempt_row,
            m.JOB_OUTCOME: m.outcome_rows,
            m.APPROVAL_DECISION: m.approval_row,
        }
        self._routes: dict[str, Callable[[dict[str, Any]], WriteResult]] = {
            m.JOB_ENVELOPE: lambda v: self.store.record_job(m.job_row(v)),
            m.JOB_STATUS_TRANSITION: lambda v: self.store.record_transition(m.transition_row(v)),
            m.SOLVER_OUTCOME: lambda v: self.store.record_attempt(m.attempt_row(v)),
            m.JOB_OUTCOME: lambda v: self.store.record_outcome(m.outcome_rows(v)),
            m.APPROVAL_DECISION: lambda v: self.store.record_approval(m.approval_row(v)),
        }

    # --- handling -----------------------------------------------------------------

    def handle(self, record: Record) -> None:
        """Store one record in one transaction (the consumer's handler).

        Raises:
            StoreUnavailableError: The database is unavailable (retried, never skipped).
            InvalidRecordError: The record cannot be stored (dead-lettered).
            UnroutableRecordError: Unknown subject (dead-lettered).
        """
        route = self._routes.get(record.subject)
        value = record.value
        with log_context(
            job_id=value.get("job_id"),
            correlation_id=value.get("correlation_id") or record.correlation_id,
        ):
            if route is None:
                raise UnroutableRecordError(
                    f"results-sink does not store {record.subject} records (topic {record.topic})"
                )
            started = time.perf_counter()
            try:
                result = route(value)
            except Exception as exc:
                mapped = translate(exc)
                if isinstance(mapped, StoreUnavailableError):
                    DATABASE_UP.set(0)
                    RETRIES.labels(self.service, ErrorClass.TRANSIENT.value).inc()
                if mapped is exc:
                    raise
                raise mapped from exc
            DATABASE_UP.set(1)
            STAGE_DURATION.labels(self.service, "store").observe(time.perf_counter() - started)
            logger.debug(
                "stored %s from %s[%d]@%d: %s",
                record.subject,
                record.topic,
                record.partition,
                record.offset,
                result,
            )

    def handle_batch(self, records: Sequence[Record]) -> None:
        """Store a batch of records in ONE transaction (the consumer's batch handler).

        Rows are mapped first; then one pipelined write per statement kind and one
        commit. Any failure (a bad value, an outage) fails the whole batch, and the
        consumer then handles it record by record through :meth:`handle`, which
        dead-letters or retries exactly the record at fault.
        """
        rows = []
        for record in records:
            to_row = self._rows.get(record.subject)
            if to_row is None:
                raise UnroutableRecordError(
                    f"results-sink does not store {record.subject} records (topic {record.topic})"
                )
            rows.append(to_row(record.value))
        started = time.perf_counter()
        try:
            self.store.record_batch(rows)
        except Exception as exc:
            mapped = translate(exc)
            if isinstance(mapped, StoreUnavailableError):
                DATABASE_UP.set(0)
            if mapped is exc:
                raise
            raise mapped from exc
        DATABASE_UP.set(1)
        STAGE_DURATION.labels(self.service, "store").observe(time.perf_counter() - started)
        logger.debug("stored a batch of %d records", len(rows))

    # --- lifecycle ----------------------------------------------------------------

    def start(self) -> bool:
        """Wait for the database and apply migrations; retries until done or stopped.

        Returns:
            True when ready to consume, False if stopped first.
        """
        backoff = self._startup_backoff_s
        while not self._stop.is_set():
            try:
                if self._migrate is not None:
                    self._migrate()
                self.store.ping()
            except Exception as exc:
                mapped = translate(exc)
                if classify(mapped) is not ErrorClass.TRANSIENT:
                    raise
                DATABASE_UP.set(0)
                logger.warning("database not available yet (%s); retrying in %.1fs", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._max_startup_backoff_s)
                continue
            DATABASE_UP.set(1)
            self._started.set()
            return True
        return False

    def run(self) -> None:
        """Start, then consume until :meth:`stop` (the ServiceRuntime's ``run``)."""
        if self.consumer is None:
            raise RuntimeError("ResultsSinkApp.run needs a consumer")
        if not self.start():
            return
        logger.info("consuming %s as group %s", ", ".join(self._routes), self.group)
        self.consumer.run(self.handle, batch_handler=self.handle_batch)

    @property
    def group(self) -> str:
        """The consumer group id ('' without a consumer)."""
        return self.consumer.group if self.consumer is not None else ""

    def stop(self) -> None:
        """Ask :meth:`run` to return after the record in hand (thread-safe)."""
        self._stop.set()
        if self.consumer is not None:
            self.consumer.stop()

    def ready(self) -> tuple[bool, str]:
        """Readiness: started (schema applied) and the database answers."""
        if not self._started.is_set():
            return False, "starting: waiting for the database / migrations"
        try:
            self.store.ping(timeout_s=1.0)
        except StoreUnavailableError as exc:
            DATABASE_UP.set(0)
            return False, str(exc)
        return True, "ready"
