"""GetJob, WatchJob and ListJobs: the results store for history, the event hub for now.

A tenant only ever sees its own jobs: a job of another tenant is reported exactly like
an unknown one (NOT_FOUND), so job ids cannot be probed across tenants.

WatchJob subscribes to the hub *before* reading the stored history, merges both by
``seq`` (duplicates from at-least-once delivery collapse), and streams transitions
strictly in order. A transition that is missing (published before the subscription,
not yet stored) is looked up in the store again until it appears.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from gateway.errors import CallerGoneError, NoAnswerError, NotFoundError, UnavailableError
from qbridge.bus.follower import EventHub, JobMemory
from qbridge.contracts.gateway_messages import (
    attempt_pb,
    fill_job_pb,
    is_final,
    job_summary_pb,
    job_update_pb,
    result_pb,
    route_pb,
    status_pb,
    statuses_from_pb,
    transition_pb,
)
from qbridge.contracts.gen.gateway.v1 import gateway_pb2 as pb
from qbridge.errors import InvalidProblemError
from qbridge.results.read import JobReader, StoredJob
from qbridge.service.admission import TenantSlots

logger = logging.getLogger(__name__)

GAP_REFILL_S = 0.3
"""A missing transition is looked up in the store again after this long."""
GAP_GIVE_UP_S = 10.0
"""After this long a still-missing transition is skipped (logged); order is kept."""
OUTCOME_WAIT_S = 3.0
"""After the final transition, how long to wait for the final outcome to attach it."""


class JobTracker:
    """Answers GetJob, WatchJob and ListJobs for a tenant."""

    def __init__(
        self,
        reader: JobReader,
        hub: EventHub,
        *,
        max_watchers: int = 64,
        tenant_max_watchers: int = 0,
        unknown_timeout_s: float = 60.0,
    ) -> None:
        """Wire the store reader and the hub.

        Args:
            reader: The results store.
            hub: Live events.
            max_watchers: WatchJob streams open at most (all tenants).
            tenant_max_watchers: Streams open per tenant at most (0: no per-tenant limit),
                so one tenant cannot take every stream.
            unknown_timeout_s: A job never seen ends its stream after this long.
        """
        self.reader = reader
        self.hub = hub
        self.unknown_timeout_s = unknown_timeout_s
        self.streams = TenantSlots(
            "WatchJob streams open",
            max_watchers,
            tenant_max_watchers,
            reason="watchers",
            retry_after_ms=1000,
        )

    # --- helpers ------------------------------------------------------------------------

    def _load(self, tenant: str, job_id: str) -> tuple[StoredJob | None, JobMemory | None]:
        """The stored job and the hub's memory of it, checked to belong to ``tenant``.

        Raises:
            NotFoundError: Unknown, or another tenant's.
            UnavailableError: The store is down and the hub does not know the job.
        """
        if not job_id:
            raise NotFoundError("job_id is required")
        mem = self.hub.memory(job_id)
        try:
            stored = self.reader.job(job_id)
        except Exception as exc:
            if mem is not None and mem.tenant == tenant:
                logger.warning("results store unavailable; answering from memory: %s", exc)
                return None, mem
            raise UnavailableError(f"results store unavailable: {exc}") from exc
        owner = (stored.tenant if stored is not None else None) or (mem.tenant if mem else None)
        if owner != tenant:
            raise NotFoundError(f"job {job_id} not found")
        return stored, mem

    # --- GetJob -------------------------------------------------------------------------

    def get(self, tenant: str, request: pb.GetJobRequest) -> pb.Job:
        """The job as known now."""
        stored, mem = self._load(tenant, request.job_id)
        job = pb.Job(job_id=request.job_id, tenant=tenant)
        status, seq, outcome = "submitted", 0, None
        if stored is not None:
            row = stored.row
            fill_job_pb(job, row)
            status = row.get("status") or status
            outcome = stored.outcome
        if mem is not None:
            if mem.transitions:
                top = max(mem.transitions)
                if top > seq and (stored is None or not is_final(status)):
                    status = mem.transitions[top]["to_status"]
                    seq = top
            outcome = outcome or mem.outcome
            if mem.rejection is not None and outcome is None and not mem.transitions:
                status = "rejected"
                job.rejection_reason = str(mem.rejection.get("reason") or "")
        if outcome is not None:
            status = str(outcome.get("status") or status)
            job.result.CopyFrom(result_pb(outcome))
            if outcome.get("route"):
                job.route = route_pb(outcome["route"])
        elif is_final(status):
            # The final transition and the outcome travel on different topics: until the
            # outcome is known too, the job is reported in the state before, so a caller
            # polling for a final status always gets its result with it.
            status = self._before_final(request.job_id, mem)
        job.status = status_pb(status)
        if request.include_transitions:
            merged = _merge(self._stored_transitions(request.job_id, 0), mem, 0)
            job.transitions.extend(transition_pb(t) for _, t in sorted(merged.items()))
        if request.include_attempts and stored is not None:
            try:
                attempts = self.reader.attempts(request.job_id)
            except Exception as exc:
                raise UnavailableError(f"results store unavailable: {exc}") from exc
            job.attempts.extend(attempt_pb(a) for a in attempts)
        return job

    def _before_final(self, job_id: str, mem: JobMemory | None) -> str:
        merged = _merge(self._stored_transitions(job_id, 0), mem, 0)
        for _, t in sorted(merged.items(), reverse=True):
            if is_final(str(t["to_status"])) and t.get("from_status"):
                return str(t["from_status"])
        return "running"

    def _stored_transitions(self, job_id: str, after_seq: int) -> list[dict[str, Any]]:
        try:
            return self.reader.transitions(job_id, after_seq)
        except Exception as exc:
            logger.warning("stored transitions of %s unavailable: %s", job_id, exc)
            return []

    # --- ListJobs -----------------------------------------------------------------------

    def list(self, tenant: str, request: pb.ListJobsRequest) -> pb.ListJobsResponse:
        """A page of the tenant's jobs."""
        size = request.page_size or 20
        if size < 0 or size > 200:
            raise InvalidProblemError(f"must be in 1..200, got {size}", field="page_size")
        try:
            rows, token = self.reader.list_jobs(
                tenant,
                limit=size,
                page_token=request.page_token,
                statuses=statuses_from_pb(request.statuses),
                problem_type=request.problem_type,
            )
        except ValueError as exc:
            raise InvalidProblemError(str(exc), field="page_token") from exc
        except Exception as exc:
            raise UnavailableError(f"results store unavailable: {exc}") from exc
        out = pb.ListJobsResponse(next_page_token=token)
        out.jobs.extend(job_summary_pb(r) for r in rows)
        return out

    # --- WatchJob -----------------------------------------------------------------------

    def watch(
        self, tenant: str, request: pb.WatchJobRequest, active: Callable[[], bool]
    ) -> Iterator[pb.JobUpdate]:
        """Every transition after ``after_seq`` in order, until the final one.

        Raises:
            NotFoundError: Unknown job or another tenant's.
            OverloadedError: Too many streams open.
            NoAnswerError: The job never showed up in the pipeline.
            CallerGoneError: The caller cancelled.
        """
        with self.streams.hold(tenant):
            yield from self._watch(tenant, request, active)

    def _watch(
        self, tenant: str, request: pb.WatchJobRequest, active: Callable[[], bool]
    ) -> Iterator[pb.JobUpdate]:
        job_id = request.job_id
        after = max(0, request.after_seq)
        sub, past = self.hub.subscribe(job_id)
        try:
            stored, _mem = self._load(tenant, job_id)
            pending = _merge(self._stored_transitions(job_id, after), past, after)
            outcome = past.outcome or (stored.outcome if stored is not None else None)
            rejection = past.rejection
            next_seq = after + 1
            stored_top = int((stored.row if stored is not None else {}).get("status_seq") or 0)
            known_top = max([stored_top, *past.transitions])
            final_known = outcome is not None or (
                stored is not None and is_final(stored.row.get("status"))
            )
            if final_known and not pending and known_top <= after and known_top > 0:
                return  # the job ended at or before after_seq: nothing left to send
            gap_since: float | None = None
            last_event = time.monotonic()
            while True:
                while next_seq in pending:
                    t = pending.pop(next_seq)
                    next_seq += 1
                    gap_since = None
                    if is_final(t["to_status"]):
                        outcome = outcome or self._await_outcome(sub, job_id, active)
                        yield job_update_pb(t, outcome)
                        return
                    yield job_update_pb(t, None)
                if rejection is not None and next_seq == 1 and not pending:
                    yield pb.JobUpdate(
                        transition=pb.StatusTransition(
                            job_id=job_id,
                            seq=0,
                            to_status=pb.JOB_STATUS_REJECTED,
                            reason=str(rejection.get("reason") or ""),
                        ),
                        final=True,
                    )
                    return
                if not active():
                    raise CallerGoneError("the caller went away")
                now = time.monotonic()
                # A gap: later transitions are here but not the next one, or the job is
                # final and its remaining transitions are not here yet (not stored yet).
                if pending or final_known:
                    gap_since = gap_since or now
                    if now - gap_since >= GAP_REFILL_S:
                        for t in self._stored_transitions(job_id, next_seq - 1):
                            pending.setdefault(int(t["seq"]), t)
                        if next_seq not in pending and now - gap_since >= GAP_GIVE_UP_S:
                            if not pending:
                                logger.warning("job %s final but transitions missing", job_id)
                                return
                            logger.warning("job %s: transition %d never arrived", job_id, next_seq)
                            next_seq = min(pending)
                            gap_since = None
                        if next_seq in pending:
                            continue
                if stored is None and now - last_event > self.unknown_timeout_s:
                    raise NoAnswerError(
                        f"job {job_id} was not seen by the pipeline within "
                        f"{self.unknown_timeout_s:.0f} s"
                    )
                event = sub.get(0.2)
                if event is None:
                    continue
                last_event = time.monotonic()
                if event.kind == "transition":
                    seq = int(event.value["seq"])
                    if seq >= next_seq:
                        pending.setdefault(seq, event.value)
                elif event.kind == "outcome":
                    outcome = event.value
                    final_known = True
                elif event.kind == "rejected":
                    rejection = event.value
        finally:
            self.hub.unsubscribe(sub)

    def _await_outcome(
        self, sub: Any, job_id: str, active: Callable[[], bool]
    ) -> dict[str, Any] | None:
        """The final outcome, which follows the final transition closely."""
        deadline = time.monotonic() + OUTCOME_WAIT_S
        mem = self.hub.memory(job_id)
        if mem is not None and mem.outcome is not None:
            return mem.outcome
        while time.monotonic() < deadline and active():
            event = sub.get(0.1)
            if event is not None and event.kind == "outcome":
                return dict(event.value)
            try:
                stored = self.reader.job(job_id)
            except Exception:
                continue
            if stored is not None and stored.outcome is not None:
                return stored.outcome
        return None


def _merge(
    stored: list[dict[str, Any]], mem: JobMemory | None, after: int
) -> dict[int, dict[str, Any]]:
    """Transitions by seq (> ``after``) from the store and the hub's memory."""
    out: dict[int, dict[str, Any]] = {int(t["seq"]): t for t in stored if int(t["seq"]) > after}
    if mem is not None:
        for seq, t in mem.transitions.items():
            if seq > after:
                out.setdefault(seq, t)
    return out
