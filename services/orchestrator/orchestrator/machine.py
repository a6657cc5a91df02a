"""The per-job state machine: plain Python, no Kafka, no database.

    accepted -> routed -> running -> succeeded | degraded | failed | expired
       |          ^          |
       |          +----------+  (retry, or fallback to classical: routed again)
       +-> awaiting_approval -> routed (approved) | routed classical (rejected,
           timed out) | failed (rejected) | expired (timed out)

A job whose quantum attempt an approval policy holds waits in
``awaiting_approval`` for a reviewer's decision (:meth:`Machine.on_approval`) or
its approval timer; no work item is sent before approval.

Every event handler mutates a :class:`JobState` and returns *effects* (status
transitions, work items, the final outcome, backend health signals). The caller
persists the new state together with the effects (a transactional outbox), so
a crash at any point neither loses nor duplicates a final outcome: effects are
re-sent until acknowledged and carry deterministic keys (``job_id:seq``,
``job_id:attempt:route``), which downstream writes are idempotent on.

Every non-final job has a timer no later than its deadline plus a grace period,
so no job can stay non-final forever.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from orchestrator.policy import Decision, Mode
from qbridge.status import DegradeReason, JobStatus

logger = logging.getLogger(__name__)


@dataclass
class Attempt:
    """One work item sent to an executor."""

    work_id: str
    attempt: int
    route: str
    backend: str
    issued_ms: int
    time_limit_ms: int
    status: str = "issued"  # issued | started | ok | error
    error_class: str | None = None
    message: str | None = None


@dataclass
class JobState:
    """Everything the orchestrator remembers about a job (persisted as JSON)."""

    job_id: str
    tenant: str
    problem_type: str
    sense: str
    correlation_id: str
    priority: int
    fallback_policy: str
    seed: int
    shots: int
    timeout_ms: int
    deadline_ms: int
    status: str = JobStatus.ACCEPTED
    seq: int = 0
    mode: str | None = None
    backend: str | None = None
    degraded_reason: str | None = None
    degraded_code: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    transient_retries: int = 0
    pending: dict[str, Any] | None = None
    quantum_deadline_ms: int | None = None
    timer_ms: int | None = None
    final_reason: str | None = None
    approval: dict[str, Any] | None = None
    """Set when an approval policy held the job: why, when, and the reviewer's decision."""

    @property
    def final(self) -> bool:
        """Whether the job reached a final status."""
        return JobStatus(self.status).final

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data for storage.

        Shallow (``results`` and ``pending`` are JSON data already and are shared, not
        copied): ``dataclasses.asdict`` deep-copies them and costs milliseconds per job.
        """
        data = {name: getattr(self, name) for name in _state_fields()}
        data["attempts"] = [dict(vars(a)) for a in self.attempts]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobState:
        """Inverse of :meth:`to_json`."""
        d = dict(data)
        d["attempts"] = [Attempt(**a) for a in d.get("attempts", [])]
        return cls(**d)


@functools.cache
def _state_fields() -> tuple[str, ...]:
    # dataclasses.fields() builds its tuple on every call: once per job state written.
    return tuple(f.name for f in fields(JobState))


@dataclass(frozen=True)
class EmitStatus:
    """Publish a status transition."""

    seq: int
    from_status: str | None
    to_status: str
    reason: str
    at_ms: int
    attempt: int | None = None
    route: str | None = None
    backend: str | None = None
    reason_code: str | None = None


@dataclass(frozen=True)
class EmitWork:
    """Publish a work item for an executor."""

    attempt: Attempt


@dataclass(frozen=True)
class EmitFinal:
    """Publish the one final outcome."""

    status: str
    reason: str
    route: str | None
    result: dict[str, Any] | None
    attempts: int
    gap: float | None
    at_ms: int
    reason_code: str | None = None
    """Set when ``status`` is ``degraded``: a :class:`~qbridge.status.DegradeReason`."""


@dataclass(frozen=True)
class BackendHealth:
    """Tell the circuit breaker how a backend did."""

    backend: str
    ok: bool


Effect = EmitStatus | EmitWork | EmitFinal | BackendHealth
Decide = Callable[[JobState], Decision]
Evaluate = Callable[[list[int]], tuple[float, bool]]
Rescue = Callable[[], dict[str, Any] | None]
"""Computes a last-resort result in-process (a ``results`` entry), or None."""


@dataclass(frozen=True)
class MachineConfig:
    """Timing knobs of the state machine (milliseconds)."""

    quantum_time_share: float = 0.6
    finalize_grace_ms: int = 500
    min_attempt_ms: int = 50
    defer_ms: int = 500
    max_transient_retries: int = 2
    retry_backoff_ms: int = 200
    rescue_margin_ms: int = 300
    """Before the deadline, a job with no answer at all is answered in-process."""
    approval_timeout_ms: int = 600_000
    """Longest wait for a reviewer (capped at half of the job's remaining budget)."""
    approval_timeout_action: str = "classical"
    """``classical`` (degraded classical answer) or ``expire``."""
    approval_reject_action: str = "classical"
    """``classical`` (degraded classical answer) or ``fail``."""


class Machine:
    """Applies events to job states."""

    def __init__(self, config: MachineConfig) -> None:
        """Create a machine with the given timing knobs."""
        self.cfg = config

    # --- events -------------------------------------------------------------------------

    def on_envelope(
        self, env: Mapping[str, Any], now_ms: int, decide: Decide, sense: str
    ) -> tuple[JobState, list[Effect]]:
        """A new accepted job: record it, route it, dispatch work (or defer admission)."""
        st = JobState(
            job_id=env["job_id"],
            tenant=env["tenant"],
            problem_type=env["problem_type"],
            sense=sense,
            correlation_id=env["correlation_id"],
            priority=env["priority"],
            fallback_policy=env["fallback_policy"],
            seed=env["seed"],
            shots=env["shot_budget"] or 0,
            timeout_ms=env["timeout_ms"],
            deadline_ms=_ms(env["deadline_at"]),
        )
        effects: list[Effect] = [self._transition(st, JobStatus.ACCEPTED, "accepted", now_ms)]
        effects += self._route(st, now_ms, decide)
        return st, effects

    def on_outcome(
        self, st: JobState, out: Mapping[str, Any], now_ms: int, decide: Decide, evaluate: Evaluate
    ) -> list[Effect]:
        """A solver outcome (started, ok or error) for one of the job's attempts."""
        if st.final:
            return []
        att = next((a for a in st.attempts if a.work_id == out["work_id"]), None)
        if att is None:
            logger.warning("outcome for unknown work item %s", out["work_id"])
            return []
        status = out["status"]
        if status == "started":
            if att.status != "issued":
                return []
            att.status = "started"
            if st.status == JobStatus.ROUTED:
                return [
                    self._transition(st, JobStatus.RUNNING, f"{att.route} started", now_ms, att)
                ]
            return []
        if att.status in ("ok", "error"):
            return []  # duplicate delivery
        if status == "ok":
            return self._on_ok(st, att, out, now_ms, decide, evaluate)
        return self._on_error(st, att, out.get("error") or {}, now_ms, decide)

    def on_approval(
        self,
        st: JobState,
        decision: str,
        reviewer: str,
        comment: str,
        now_ms: int,
    ) -> list[Effect]:
        """A reviewer approved or rejected a job held in ``awaiting_approval``.

        A decision for a job that is not waiting (already decided, timed out, final)
        changes nothing: the first decision wins.
        """
        if st.final or st.status != JobStatus.AWAITING_APPROVAL or st.approval is None:
            logger.info("decision %s for %s ignored: job is %s", decision, st.job_id, st.status)
            return []
        if st.approval.get("decision") is not None:
            return []
        st.approval.update(decision=decision, reviewer=reviewer, comment=comment, decided_ms=now_ms)
        st.pending = None
        if decision == "approve":
            return self._release(st, now_ms, f"approved by {reviewer}")
        why = f"rejected by {reviewer}" + (f": {comment}" if comment else "")
        if self.cfg.approval_reject_action == "fail":
            return self._finish(st, JobStatus.FAILED, why, None, now_ms)
        return self._fallback(st, now_ms, why, DegradeReason.APPROVAL_REJECTED)

    def on_timer(
        self, st: JobState, now_ms: int, decide: Decide, rescue: Rescue | None = None
    ) -> list[Effect]:
        """Time passed: run due retries/admissions, fall back from slow quantum, expire.

        Near the deadline, a job without any answer is rescued by ``rescue`` (an
        in-process heuristic) so the caller still gets a safe answer in time.
        """
        if st.final:
            return []
        effects: list[Effect] = []
        if not st.results and rescue is not None and now_ms >= self._rescue_at(st):
            result = rescue()
            if result is not None:
                st.results["classical"] = result
                self._degrade(st, "no executor answered before the deadline", DegradeReason.RESCUE)
                return self._finish_with_best(st, now_ms, "answered by the built-in heuristic")
        if now_ms >= st.deadline_ms + self.cfg.finalize_grace_ms:
            return self._finish_with_best(st, now_ms, "deadline passed")
        if st.pending and now_ms >= st.pending["at_ms"]:
            pending, st.pending = st.pending, None
            if pending["kind"] == "admission":
                effects += self._route(st, now_ms, decide)
            elif pending["kind"] == "approval":
                return self._approval_timeout(st, now_ms)
            else:
                effects += self._dispatch(
                    st, pending["route"], pending["backend"], now_ms, pending["reason"]
                )
        q_active = self._active(st, "quantum")
        if (
            q_active
            and st.quantum_deadline_ms is not None
            and now_ms >= st.quantum_deadline_ms
            and not self._active(st, "classical")
            and "classical" not in st.results
        ):
            waited = now_ms - q_active[-1].issued_ms
            reason = f"quantum did not answer within {waited} ms"
            st.quantum_deadline_ms = None
            effects += self._fallback(st, now_ms, reason, DegradeReason.QUANTUM_TIMEOUT)
        self._set_timer(st)
        return effects

    # --- internals ----------------------------------------------------------------------

    def _route(self, st: JobState, now_ms: int, decide: Decide) -> list[Effect]:
        decision = decide(st)
        if not decision.admit:
            # Deferral never outlives the deadline: near it, admit classically.
            if st.deadline_ms - now_ms > 3 * self.cfg.defer_ms:
                st.pending = {"kind": "admission", "at_ms": now_ms + self.cfg.defer_ms}
                self._set_timer(st)
                return []
            decision = Decision(
                Mode.CLASSICAL,
                None,
                degraded=True,
                reason=decision.reason,
                code=decision.code or DegradeReason.ADMISSION,
            )
        st.mode = decision.mode.value
        st.backend = decision.backend
        if decision.degraded:
            self._degrade(st, decision.reason, decision.code or DegradeReason.OTHER)
        if decision.hold and decision.mode in (Mode.QUANTUM, Mode.RACE) and st.approval is None:
            return self._hold(st, now_ms, decision)
        effects: list[Effect] = []
        if decision.mode in (Mode.QUANTUM, Mode.RACE):
            assert decision.backend is not None
            effects += self._dispatch(st, "quantum", decision.backend, now_ms, decision.reason)
        if decision.mode in (Mode.CLASSICAL, Mode.RACE):
            code = decision.code if decision.degraded else None
            effects += self._dispatch(
                st, "classical", "ortools", now_ms, decision.reason, code=code
            )
        return effects

    def _hold(self, st: JobState, now_ms: int, decision: Decision) -> list[Effect]:
        """Park the job until a reviewer decides or the approval timer fires."""
        wait = min(self.cfg.approval_timeout_ms, max(0, (st.deadline_ms - now_ms) // 2))
        st.approval = {
            "reason": decision.hold,
            "route_reason": decision.reason,
            "requested_ms": now_ms,
            "expires_ms": now_ms + wait,
            "decision": None,
            "reviewer": None,
            "comment": None,
            "decided_ms": None,
        }
        st.pending = {"kind": "approval", "at_ms": now_ms + wait}
        effect = self._transition(
            st, JobStatus.AWAITING_APPROVAL, f"awaiting approval: {decision.hold}", now_ms
        )
        self._set_timer(st)
        return [effect]

    def _release(self, st: JobState, now_ms: int, why: str) -> list[Effect]:
        """Approved: send the work the routing decision asked for."""
        effects: list[Effect] = []
        if st.mode in (Mode.QUANTUM, Mode.RACE):
            assert st.backend is not None
            effects += self._dispatch(st, "quantum", st.backend, now_ms, why)
        if st.mode == Mode.RACE:
            effects += self._dispatch(st, "classical", "ortools", now_ms, why)
        return effects

    def _approval_timeout(self, st: JobState, now_ms: int) -> list[Effect]:
        assert st.approval is not None
        st.approval.update(decision="timeout", decided_ms=now_ms)
        waited = now_ms - st.approval["requested_ms"]
        why = f"no approval decision within {waited} ms"
        if self.cfg.approval_timeout_action == "expire":
            return self._finish(st, JobStatus.EXPIRED, why, None, now_ms)
        return self._fallback(st, now_ms, why, DegradeReason.APPROVAL_TIMEOUT)

    def _dispatch(
        self,
        st: JobState,
        route: str,
        backend: str,
        now_ms: int,
        reason: str,
        *,
        code: DegradeReason | None = None,
    ) -> list[Effect]:
        left = st.deadline_ms - now_ms
        if left < self.cfg.min_attempt_ms:
            return self._finish_with_best(st, now_ms, f"no time left for a {route} attempt")
        if route == "quantum":
            limit = max(self.cfg.min_attempt_ms, int(left * self.cfg.quantum_time_share))
            st.quantum_deadline_ms = now_ms + limit
        else:
            limit = max(self.cfg.min_attempt_ms, int(left * 0.8))
        n = len(st.attempts) + 1
        att = Attempt(f"{st.job_id}:{n}:{route}", n, route, backend, now_ms, limit)
        st.attempts.append(att)
        effects: list[Effect] = [
            self._transition(st, JobStatus.ROUTED, f"{route}: {reason}", now_ms, att, code=code),
            EmitWork(att),
        ]
        self._set_timer(st)
        return effects

    def _degrade(self, st: JobState, reason: str, code: DegradeReason) -> None:
        """Remember why a classical answer will count as degraded (text and code)."""
        st.degraded_reason, st.degraded_code = reason, code.value

    def _fallback(
        self, st: JobState, now_ms: int, reason: str, code: DegradeReason
    ) -> list[Effect]:
        self._degrade(st, reason, code)
        return self._dispatch(st, "classical", "ortools", now_ms, f"fallback: {reason}", code=code)

    def _on_ok(
        self,
        st: JobState,
        att: Attempt,
        out: Mapping[str, Any],
        now_ms: int,
        decide: Decide,
        evaluate: Evaluate,
    ) -> list[Effect]:
        att.status = "ok"
        effects: list[Effect] = [BackendHealth(att.backend, True)] if att.route == "quantum" else []
        solution = out.get("solution")
        if solution is None:
            return effects + self._on_error(
                st,
                att,
                {"error_class": "defect", "message": "ok outcome without a solution"},
                now_ms,
                decide,
            )
        # Never report a solver's own claim: recompute the objective on the original problem.
        objective, feasible = evaluate(list(solution["assignment"]))
        if abs(objective - solution["objective"]) > 1e-6 * max(1.0, abs(objective)):
            logger.warning(
                "%s reported objective %s, recomputed %s",
                att.work_id,
                solution["objective"],
                objective,
            )
        result = {
            "solution": {**solution, "objective": objective, "feasible": feasible},
            "candidates": list(out.get("candidates") or []),
            "quality": out.get("quality"),
            "provenance": out.get("provenance"),
            "attempt": att.attempt,
        }
        st.results[att.route] = result
        if st.mode == Mode.RACE and self._active(
            st, "quantum" if att.route == "classical" else "classical"
        ):
            self._set_timer(st)
            return effects  # wait for the other route (or the deadline)
        if att.route == "quantum" and not feasible and "classical" not in st.results:
            return effects + self._fallback(
                st, now_ms, "quantum answer infeasible", DegradeReason.QUANTUM_INFEASIBLE
            )
        return effects + self._finish_with_best(st, now_ms, "")

    def _on_error(
        self,
        st: JobState,
        att: Attempt,
        error: Mapping[str, Any],
        now_ms: int,
        decide: Decide,
    ) -> list[Effect]:
        att.status = "error"
        cls = error.get("error_class", "defect")
        msg = error.get("message", "")
        att.error_class, att.message = cls, msg
        effects: list[Effect] = []
        if cls == "transient" and st.transient_retries < self.cfg.max_transient_retries:
            st.transient_retries += 1
            delay = self.cfg.retry_backoff_ms * 2 ** (st.transient_retries - 1)
            st.pending = {
                "kind": "retry",
                "at_ms": now_ms + delay,
                "route": att.route,
                "backend": att.backend,
                "reason": f"retry {st.transient_retries} after transient error: {msg}",
            }
            self._set_timer(st)
            return effects
        if att.route == "quantum":
            effects.append(BackendHealth(att.backend, False))
            if cls in ("invalid_input", "defect") and st.mode != Mode.RACE:
                return effects + self._finish(
                    st, JobStatus.FAILED, f"quantum {cls}: {msg}", None, now_ms
                )
            if st.fallback_policy == "quantum_only":
                return effects + self._finish(
                    st,
                    JobStatus.FAILED,
                    f"quantum_only and quantum failed ({cls}): {msg}",
                    None,
                    now_ms,
                )
            if self._active(st, "classical") or "classical" in st.results:
                self._degrade(st, f"quantum {cls}: {msg}", DegradeReason.for_error_class(cls))
                if "classical" in st.results:
                    return effects + self._finish_with_best(st, now_ms, "")
                self._set_timer(st)
                return effects
            return effects + self._fallback(
                st, now_ms, f"quantum {cls}: {msg}", DegradeReason.for_error_class(cls)
            )
        # classical route failed for good
        if st.results or self._active(st, "quantum"):
            if st.results:
                return effects + self._finish_with_best(st, now_ms, f"classical {cls}: {msg}")
            self._set_timer(st)
            return effects
        return effects + self._finish(st, JobStatus.FAILED, f"classical {cls}: {msg}", None, now_ms)

    def _finish_with_best(self, st: JobState, now_ms: int, why: str) -> list[Effect]:
        if not st.results:
            return self._finish(st, JobStatus.EXPIRED, why or "no answer", None, now_ms)
        ranked = sorted(st.results.items(), key=lambda kv: self._rank(st, kv[1]))
        route, best = ranked[0]
        gap = None
        code: DegradeReason | None = None
        if "quantum" in st.results and "classical" in st.results:
            q = st.results["quantum"]["solution"]["objective"]
            c = st.results["classical"]["solution"]["objective"]
            worse = (q - c) if st.sense == "minimize" else (c - q)
            gap = worse / max(abs(c), 1e-9)
        if st.mode == Mode.RACE and gap is not None:
            status, reason = JobStatus.SUCCEEDED, f"race won by {route} (gap {gap:+.4f})"
        elif route == "classical" and st.degraded_reason:
            status, reason = JobStatus.DEGRADED, st.degraded_reason
            code = DegradeReason(st.degraded_code or DegradeReason.OTHER)
        else:
            status, reason = JobStatus.SUCCEEDED, f"answered by {route}"
        if why:
            reason = f"{reason}; {why}"
        return self._finish(st, status, reason, route, now_ms, best, gap, code)

    def _rank(self, st: JobState, result: Mapping[str, Any]) -> tuple[bool, float]:
        sol = result["solution"]
        obj = sol["objective"] if st.sense == "minimize" else -sol["objective"]
        return (not sol["feasible"], obj)

    def _finish(
        self,
        st: JobState,
        status: JobStatus,
        reason: str,
        route: str | None,
        now_ms: int,
        result: dict[str, Any] | None = None,
        gap: float | None = None,
        code: DegradeReason | None = None,
    ) -> list[Effect]:
        st.final_reason = reason
        st.pending = None
        st.timer_ms = None
        transition = self._transition(st, status, reason, now_ms, code=code)
        final = EmitFinal(
            str(status), reason, route, result, len(st.attempts), gap, now_ms, reason_code=code
        )
        return [transition, final]

    def _transition(
        self,
        st: JobState,
        to: JobStatus,
        reason: str,
        now_ms: int,
        att: Attempt | None = None,
        *,
        code: DegradeReason | None = None,
    ) -> EmitStatus:
        prev = None if st.seq == 0 else st.status
        st.seq += 1
        st.status = to.value
        return EmitStatus(
            seq=st.seq,
            from_status=prev,
            to_status=to.value,
            reason=reason,
            at_ms=now_ms,
            attempt=att.attempt if att else None,
            route=att.route if att else None,
            backend=att.backend if att else None,
            reason_code=code,
        )

    def _rescue_at(self, st: JobState) -> int:
        return st.deadline_ms - min(self.cfg.rescue_margin_ms, st.timeout_ms // 10)

    def _active(self, st: JobState, route: str) -> list[Attempt]:
        return [a for a in st.attempts if a.route == route and a.status in ("issued", "started")]

    def _set_timer(self, st: JobState) -> None:
        if st.final:
            st.timer_ms = None
            return
        candidates = [st.deadline_ms + self.cfg.finalize_grace_ms]
        if not st.results:
            candidates.append(self._rescue_at(st))
        if st.pending:
            candidates.append(st.pending["at_ms"])
        if st.quantum_deadline_ms is not None and self._active(st, "quantum"):
            candidates.append(st.quantum_deadline_ms)
        st.timer_ms = min(candidates)


def _ms(value: Any) -> int:
    """Avro timestamp-millis arrive as datetimes; stored state keeps epoch ms."""
    if isinstance(value, int):
        return value
    return int(value.timestamp() * 1000)
