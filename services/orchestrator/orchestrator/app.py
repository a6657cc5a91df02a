"""The orchestrator's Kafka edge: decode events, run the state machine, produce effects."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from orchestrator.config import OrchestratorSettings
from orchestrator.machine import (
    BackendHealth,
    Effect,
    EmitFinal,
    EmitStatus,
    EmitWork,
    JobState,
    Machine,
    MachineConfig,
)
from orchestrator.policy import (
    ApprovalPolicy,
    CircuitBreaker,
    Decision,
    JobFacts,
    RoutingContext,
    approval_hold,
    decide,
    reads_lag,
)
from orchestrator.store import OutboxRow, Store
from qbridge import metrics as m
from qbridge import topics
from qbridge.bus import BusProducer, Record
from qbridge.bus import headers as h
from qbridge.bus.lag_monitor import LagMonitor
from qbridge.contracts.codec import AvroCodec
from qbridge.contracts.convert import (
    problem_branch,
    problem_from_avro,
    provenance_to_avro,
    quality_to_avro,
    solution_to_avro,
)
from qbridge.contracts.records import WorkItem
from qbridge.errors import ErrorClass, InvalidProblemError, classify
from qbridge.problems.base import Problem
from qbridge.problems.registry import PROBLEM_TYPES
from qbridge.service import log_context
from qbridge.solvers.base import Provenance, Quality, Route, Timings
from qbridge.solvers.fallback import last_resort
from qbridge.status import DegradeReason, JobStatus

logger = logging.getLogger(__name__)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _problem_class(problem_type: str) -> type[Problem]:
    """The model class of a problem type.

    Raises:
        InvalidProblemError: Unknown type.
    """
    cls = PROBLEM_TYPES.get(problem_type)
    if cls is None:
        raise InvalidProblemError(f"unknown problem type {problem_type!r}", field="problem_type")
    return cls


class OrchestratorApp:
    """Consumes envelopes and solver outcomes; owns every job's state machine."""

    def __init__(
        self,
        settings: OrchestratorSettings,
        store: Store,
        producer: BusProducer,
        codec: AvroCodec,
        lag_monitor: LagMonitor | None = None,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        """Wire the app.

        Args:
            settings: Orchestrator settings.
            store: Durable state.
            producer: Where effects go.
            codec: Avro codec for effects.
            lag_monitor: Reads the executors' consumer-group lag (None: lag unknown).
            clock: Epoch milliseconds (injectable for tests).
        """
        self.s = settings
        self.store = store
        self.producer = producer
        self.codec = codec
        self.lag_monitor = lag_monitor
        self.clock = clock
        self.machine = Machine(
            MachineConfig(
                quantum_time_share=settings.quantum_time_share,
                finalize_grace_ms=settings.finalize_grace_ms,
                defer_ms=settings.defer_ms,
                max_transient_retries=settings.max_transient_retries,
                retry_backoff_ms=settings.retry_backoff_ms,
                approval_timeout_ms=settings.approval_timeout_ms,
                approval_timeout_action=settings.approval_timeout_action,
                approval_reject_action=settings.approval_reject_action,
            )
        )
        self.approval_policy = ApprovalPolicy(
            tenants=frozenset(settings.approval_tenants),
            problem_types=frozenset(settings.approval_problem_types),
            min_cost_units=settings.approval_min_cost_units,
            premium_backends=frozenset(settings.approval_premium_backends),
            cost_per_qubit_shot=settings.approval_cost_per_qubit_shot,
        )
        self.breaker = CircuitBreaker(
            settings.breaker_failures, settings.breaker_cooldown_ms / 1000
        )
        self.lag: dict[str, int] = {}
        self._problems: OrderedDict[str, Problem] = OrderedDict()
        self._next_timer = 0.0
        self._last_lag = float("-inf")
        self._lag_wanted_at = float("-inf")
        """When routing last depended on executor lag (monotonic seconds)."""
        self._next_resend = 0.0
        self._tick_backoff = 0.0
        self._tick_retry_at = 0.0
        self._lag_reading = threading.Lock()
        self._unmarked: list[int] = []
        """Ids of delivered outbox rows not yet marked sent (see :meth:`_send`)."""
        self._unmarked_since = 0.0

    # --- consumer handler ---------------------------------------------------------------

    def handle(self, record: Record) -> None:
        """Handle one envelope or solver outcome (called by the BusConsumer)."""
        self.handle_batch([record])

    def handle_batch(self, records: Sequence[Record]) -> None:
        """Handle a batch of envelopes and outcomes in ONE PostgreSQL transaction.

        Every job touched by the batch is loaded (row-locked) with one query; the new
        states and the outbox rows of every message are written in the same
        transaction; after the commit the whole outbox is produced with one flush
        and marked sent. A crash before that leaves unsent rows that
        :meth:`resend_outbox` produces again; a failing batch is retried by the
        consumer record by record.
        """
        now = self.clock()
        batch = _Batch()
        marks = list(self._unmarked)
        with self.store.transaction() as conn:
            # The previous batches' delivered rows are marked sent in this transaction
            # rather than in one of their own (one PostgreSQL commit per batch, not two).
            if marks:
                self.store.mark_sent(marks, conn)
            batch.known = self.store.load_many(conn, {r.value["job_id"] for r in records})
            for record in records:
                value = record.value
                with log_context(job_id=value.get("job_id"), correlation_id=record.correlation_id):
                    if record.subject == "qbridge.JobEnvelope":
                        self._on_envelope(batch, value, record.headers, now)
                    elif record.subject == "qbridge.SolverOutcome":
                        self._on_outcome(conn, batch, value, record.headers, now)
                    elif record.subject == "qbridge.ApprovalDecision":
                        self._on_approval(batch, value, record.headers, now)
                    else:
                        logger.warning("ignoring %s on %s", record.subject, record.topic)
            self.store.insert_many(conn, [batch.known[j] for j in batch.new])
            self.store.save_many(conn, [batch.known[j][0] for j in batch.changed - batch.new])
            rows = self.store.add_outbox_many(conn, batch.outbox)
        del self._unmarked[: len(marks)]
        for st, effects in batch.effects:
            self._after_commit(st, effects, [])
        self._send(rows, mark_later=True)

    def _on_envelope(
        self,
        batch: _Batch,
        env: dict[str, Any],
        incoming: Mapping[str, bytes],
        now: int,
    ) -> None:
        job_id = env["job_id"]
        known = batch.known.get(job_id)
        if known is not None:
            if known[2] != env["input_fingerprint"]:
                logger.error(
                    "job %s re-submitted with a different input (idempotency key reused);"
                    " keeping the first",
                    job_id,
                )
            return  # duplicate: its effects are in the outbox already
        started = time.perf_counter()
        # Routing needs only the type's sense: the problem model is built when an outcome
        # needs evaluating (intake, the only writer of envelopes, validated it already).
        st, effects = self.machine.on_envelope(
            env, now, self._decider(env), _problem_class(env["problem_type"]).sense.value
        )
        # Kept as decoded for the rest of the batch; stored as JSON (datetimes as ms).
        batch.known[job_id] = (st, env, env["input_fingerprint"])
        batch.new.add(job_id)
        batch.add(st, effects, self._encode(st, env, effects, incoming))
        m.STAGE_DURATION.labels("orchestrator", "route").observe(time.perf_counter() - started)

    def _on_outcome(
        self,
        conn: Any,
        batch: _Batch,
        out: dict[str, Any],
        incoming: Mapping[str, bytes],
        now: int,
    ) -> None:
        loaded = batch.known.get(out["job_id"])
        if loaded is None:
            # An outcome can only follow an envelope we stored; this one is stale or foreign.
            logger.warning("outcome for unknown job %s ignored", out["job_id"])
            return
        st, envelope, _ = loaded
        problem = self._problem(envelope)

        def evaluate(assignment: list[int]) -> tuple[float, bool]:
            ev = problem.evaluate(assignment)
            return ev.objective, ev.feasible

        effects = self.machine.on_outcome(st, out, now, self._decider(envelope), evaluate)
        if out["status"] == "ok" and out["route"] == "quantum" and out.get("provenance"):
            prov = out["provenance"]
            self.store.add_usage(
                conn,
                st.tenant,
                prov.get("shots") or 0,
                prov["cost_units"],
                job_id=st.job_id,
                attempt=out["attempt"],
            )
        if out["status"] == "error" and out.get("error"):
            m.RETRIES.labels("orchestrator", out["error"]["error_class"]).inc()
        batch.changed.add(st.job_id)
        batch.add(st, effects, self._encode(st, envelope, effects, incoming))

    def _on_approval(
        self,
        batch: _Batch,
        dec: dict[str, Any],
        incoming: Mapping[str, bytes],
        now: int,
    ) -> None:
        loaded = batch.known.get(dec["job_id"])
        if loaded is None:
            logger.warning("approval decision for unknown job %s ignored", dec["job_id"])
            return
        st, envelope, _ = loaded
        effects = self.machine.on_approval(
            st, dec["decision"], dec["reviewer"], dec.get("comment") or "", now
        )
        if not effects:
            return
        batch.changed.add(st.job_id)
        batch.add(st, effects, self._encode(st, envelope, effects, incoming))

    # --- timers, lag, outbox resend -------------------------------------------------------

    def tick(self) -> None:
        """Periodic work, called between polls: timers, lag, outbox resend.

        Never raises: a failure (database or Kafka outage, or a defect) is classified,
        logged and retried with exponential backoff, so an outage while idle does not
        end the process; nothing is lost meanwhile (timers and the outbox are durable).
        """
        mono = time.monotonic()
        if mono < self._tick_retry_at:
            return
        try:
            self._periodic(mono)
        except Exception as exc:
            cls = classify(exc)
            self._tick_backoff = min(max(self._tick_backoff * 2, 0.5), self.s.tick_max_backoff_s)
            self._tick_retry_at = mono + self._tick_backoff
            m.RETRIES.labels("orchestrator", cls.value).inc()
            log = logger.exception if cls is ErrorClass.DEFECT else logger.warning
            log(
                "periodic work failed (%s): %s; retrying in %.1fs",
                cls.value,
                exc,
                self._tick_backoff,
            )
        else:
            if self._tick_backoff:
                logger.info("periodic work recovered")
            self._tick_backoff = 0.0

    def _periodic(self, mono: float) -> None:
        self.mark_delivered(mono)
        # Lag is read every lag_poll_ms while recent jobs' routing depends on it, and
        # only every lag_idle_poll_ms (for the gauge) while none does: each read costs a
        # broker round trip per partition, a tenth of this process's CPU at high rates
        # of classical-only jobs, which never look at it.
        wanted = mono - self._lag_wanted_at < self.s.lag_idle_poll_ms / 1000
        poll_s = (self.s.lag_poll_ms if wanted else self.s.lag_idle_poll_ms) / 1000
        if mono >= self._last_lag + poll_s and not self._lag_reading.locked():
            self._last_lag = mono
            # Reading lag costs broker round trips per partition (hundreds of ms under
            # load): a background thread does it, so the consumer loop never waits.
            threading.Thread(target=self._refresh_lag_once, daemon=True).start()
        if mono >= self._next_timer:
            self._next_timer = mono + self.s.timer_scan_ms / 1000
            self.run_timers()
        if mono >= self._next_resend:
            self._next_resend = mono + self.s.outbox_resend_ms / 1000
            # Delivered rows first: a slow batch can make them look old enough to re-send.
            self.mark_delivered()
            self.resend_outbox()

    def _refresh_lag_once(self) -> None:
        with self._lag_reading:
            try:
                self.refresh_lag()
            except Exception:  # never kill the thread's caller; the next tick retries
                logger.exception("reading executor lag failed")

    def run_timers(self) -> int:
        """Apply due timers; returns how many jobs were looked at."""
        now = self.clock()
        due = self.store.due(now)
        for job_id in due:
            with log_context(job_id=job_id), self.store.transaction() as conn:
                loaded = self.store.load(conn, job_id, skip_locked=True)
                if loaded is None:
                    continue
                st, envelope = loaded
                if st.final or st.timer_ms is None or st.timer_ms > now:
                    continue
                effects = self.machine.on_timer(
                    st, now, self._decider(envelope), partial(self._rescue, st, envelope)
                )
                self.store.save(conn, st)
                rows = self.store.add_outbox(conn, job_id, self._encode(st, envelope, effects, {}))
            self._after_commit(st, effects, rows)
        return len(due)

    def refresh_lag(self) -> None:
        """Read executor lag now (the monitor keeps a group's last value when a read fails)."""
        if self.lag_monitor is not None:
            self.lag_monitor.refresh()
            self.lag = self.lag_monitor.by_group

    def resend_outbox(self) -> int:
        """Re-produce outbox rows left unsent by a crash or a failed flush."""
        rows = self.store.unsent(older_than_s=self.s.outbox_resend_ms / 1000)
        if rows:
            logger.info("re-sending %d outbox messages", len(rows))
            self._send(rows)
        return len(rows)

    # --- helpers ------------------------------------------------------------------------

    def _problem(self, envelope: Mapping[str, Any]) -> Problem:
        job_id = envelope["job_id"]
        cached = self._problems.get(job_id)
        if cached is None:
            cached = problem_from_avro(envelope["problem_type"], envelope["problem"])
            self._problems[job_id] = cached
            if len(self._problems) > 1000:
                self._problems.popitem(last=False)
        return cached

    def _rescue(self, st: JobState, envelope: Mapping[str, Any]) -> dict[str, Any] | None:
        """A last-resort answer computed here, labelled as such in its provenance."""
        started = time.perf_counter()
        best = last_resort(self._problem(envelope), st.seed)
        if best is None:
            return None
        elapsed = time.perf_counter() - started
        prov = Provenance(
            route=Route.CLASSICAL,
            solver="heuristic",
            backend="orchestrator-inline",
            seed=st.seed,
            timings=Timings(execute_s=elapsed),
        )
        logger.warning("job %s: no executor answered; using the built-in heuristic", st.job_id)
        return {
            "solution": solution_to_avro(best),
            "candidates": [solution_to_avro(best)],
            "quality": quality_to_avro(Quality()),
            "provenance": provenance_to_avro(prov),
            "attempt": len(st.attempts),
        }

    def _decider(self, envelope: Mapping[str, Any]) -> Callable[[JobState], Decision]:
        def _decide(st: JobState) -> Decision:
            backend = self.s.tenant_backends.get(st.tenant, self.s.default_backend)
            shot_quota = self.s.tenant_shot_quota.get(st.tenant)
            cost_quota = self.s.tenant_cost_quota.get(st.tenant)
            shots_used, cost_used = (
                self.store.usage(st.tenant)
                if shot_quota is not None or cost_quota is not None
                else (0, 0.0)
            )
            q_lag = self.lag.get(topics.QUANTUM_EXECUTOR_GROUP.name, 0)
            c_lag = self.lag.get(topics.CLASSICAL_FALLBACK_GROUP.name, 0)
            ctx = RoutingContext(
                backend=backend,
                backend_max_qubits=self.s.backend_max_qubits.get(backend, 0),
                backend_available=self.breaker.available(backend, time.monotonic()),
                quantum_lag=q_lag,
                total_lag=q_lag + c_lag,
                shots_left=None if shot_quota is None else shot_quota - shots_used,
                cost_left=None if cost_quota is None else cost_quota - cost_used,
                degrade_quantum_lag=self.s.degrade_quantum_lag,
                pause_low_priority_lag=self.s.pause_low_priority_lag,
                low_priority_below=self.s.low_priority_below,
            )
            facts = JobFacts(
                tenant=st.tenant,
                fallback_policy=st.fallback_policy,
                priority=st.priority,
                num_qubits=envelope.get("num_qubits"),
                shots=st.shots or self.s.default_shots,
            )
            if reads_lag(facts, self.s.low_priority_below):
                self._lag_wanted_at = time.monotonic()
            decision = decide(facts, ctx)
            if decision.admit and decision.mode != "classical":
                hold = approval_hold(facts, st.problem_type, backend, self.approval_policy)
                if hold is not None:
                    decision = dataclasses.replace(decision, hold=hold)
            return decision

        return _decide

    def _encode(
        self,
        st: JobState,
        envelope: Mapping[str, Any],
        effects: Sequence[Effect],
        incoming: Mapping[str, bytes],
    ) -> list[OutboxRow]:
        hdrs = {k: v.decode() for k, v in h.propagate(incoming) if k != h.CORRELATION_ID}
        hdrs[h.CORRELATION_ID] = st.correlation_id
        hdrs[h.JOB_ID] = st.job_id
        rows = []
        for e in effects:
            if isinstance(e, EmitStatus):
                value = {
                    "job_id": st.job_id,
                    "tenant": st.tenant,
                    "seq": e.seq,
                    "from_status": e.from_status,
                    "to_status": e.to_status,
                    "reason": e.reason,
                    "reason_code": e.reason_code,
                    "attempt": e.attempt,
                    "route": e.route,
                    "backend": e.backend,
                    "correlation_id": st.correlation_id,
                    "at": _dt(e.at_ms),
                }
                rows.append(self._row(topics.JOB_STATUS, st.job_id, value, hdrs))
            elif isinstance(e, EmitWork):
                a = e.attempt
                value = WorkItem(
                    work_id=a.work_id,
                    job_id=st.job_id,
                    attempt=a.attempt,
                    route=a.route,
                    backend=a.backend,
                    tenant=st.tenant,
                    problem_type=st.problem_type,
                    problem=problem_branch(st.problem_type, envelope["problem"]),
                    time_limit_ms=a.time_limit_ms,
                    shots=st.shots or self.s.default_shots,
                    seed=st.seed,
                    priority=st.priority,
                    deadline_at=_dt(st.deadline_ms),
                    correlation_id=st.correlation_id,
                    enqueued_at=_dt(a.issued_ms),
                ).to_avro()
                topic = topics.WORK_QUANTUM if a.route == "quantum" else topics.WORK_CLASSICAL
                rows.append(self._row(topic, st.job_id, value, hdrs))
            elif isinstance(e, EmitFinal):
                result = e.result or {}
                value = {
                    "job_id": st.job_id,
                    "tenant": st.tenant,
                    "status": e.status,
                    "reason": e.reason,
                    "reason_code": e.reason_code,
                    "problem_type": st.problem_type,
                    "input_fingerprint": envelope["input_fingerprint"],
                    "route": e.route,
                    "solution": result.get("solution"),
                    "candidates": result.get("candidates") or [],
                    "quality": result.get("quality"),
                    "provenance": result.get("provenance"),
                    "attempts": e.attempts,
                    "quantum_classical_gap": e.gap,
                    "correlation_id": st.correlation_id,
                    "completed_at": _dt(e.at_ms),
                }
                rows.append(self._row(topics.JOB_OUTCOMES, st.job_id, value, hdrs))
        return rows

    def _row(
        self, topic: topics.TopicSpec, key: str, value: dict[str, Any], hdrs: dict[str, str]
    ) -> OutboxRow:
        return OutboxRow(topic.name, key, self.codec.encode(topic.record, value), dict(hdrs))

    def _watch_breaker(self, backend: str) -> None:
        # A function gauge, so a breaker that closes by cooldown shows 1 without an event.
        breaker = self.breaker
        m.BACKEND_AVAILABLE.labels(backend).set_function(
            lambda: float(breaker.available(backend, time.monotonic()))
        )

    def _after_commit(self, st: JobState, effects: Sequence[Effect], rows: list[OutboxRow]) -> None:
        now = time.monotonic()
        for e in effects:
            if isinstance(e, BackendHealth):
                if e.ok:
                    self.breaker.record_success(e.backend)
                else:
                    self.breaker.record_failure(e.backend, now)
                self._watch_breaker(e.backend)
            elif isinstance(e, EmitFinal):
                m.JOBS_FINAL.labels(e.status, e.route or "none", st.problem_type).inc()
                if e.gap is not None:
                    m.QUANTUM_CLASSICAL_GAP.labels(st.problem_type).observe(e.gap)
                if e.status == JobStatus.DEGRADED:
                    # Counted when the job ends degraded, whatever caused it (routing,
                    # a quantum failure or timeout, or the in-process rescue).
                    m.FALLBACKS.labels(e.reason_code or DegradeReason.OTHER).inc()
                logger.info("job %s %s via %s: %s", st.job_id, e.status, e.route, e.reason)
        self._send(rows)

    def _send(self, rows: Sequence[OutboxRow], mark_later: bool = False) -> None:
        """Produce outbox rows, wait for their acknowledgement, then mark them sent.

        Args:
            rows: The rows.
            mark_later: Leave the marking to the next batch's transaction (or to the
                idle tick after ``outbox_mark_delay_ms``): a crash before it only
                re-sends them, which downstream writes are idempotent on.
        """
        if not rows:
            return
        for r in rows:
            self.producer.send_raw(r.topic, r.value, key=r.key, headers=h.to_list(r.headers))
        self.producer.flush()
        ids = [r.id for r in rows if r.id is not None]
        if not mark_later:
            self.store.mark_sent(ids)
            return
        if ids and not self._unmarked:
            self._unmarked_since = time.monotonic()
        self._unmarked += ids

    def mark_delivered(self, mono: float | None = None) -> None:
        """Mark delivered outbox rows sent now (at shut-down), or from the idle tick.

        Args:
            mono: ``time.monotonic()`` of the tick: only rows no batch has marked within
                ``outbox_mark_delay_ms`` are marked. None: every delivered row.
        """
        if not self._unmarked:
            return
        if mono is not None and mono - self._unmarked_since < self.s.outbox_mark_delay_ms / 1000:
            return
        marks = list(self._unmarked)
        self.store.mark_sent(marks)
        del self._unmarked[: len(marks)]


@dataclass
class _Batch:
    """What one batch transaction has seen and caused."""

    known: dict[str, tuple[JobState, dict[str, Any], str]] = field(default_factory=dict)
    """Job states (with envelope and fingerprint) by id, as changed so far in the batch."""
    new: set[str] = field(default_factory=set)
    changed: set[str] = field(default_factory=set)
    outbox: list[tuple[str, OutboxRow]] = field(default_factory=list)
    effects: list[tuple[JobState, list[Effect]]] = field(default_factory=list)

    def add(self, st: JobState, effects: list[Effect], rows: list[OutboxRow]) -> None:
        self.effects.append((st, effects))
        self.outbox.extend((st.job_id, r) for r in rows)
