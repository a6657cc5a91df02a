"""What an executor does with one work item, shared by the quantum and classical executors.

:func:`execute` turns a decoded ``qbridge.WorkItem`` into ``qbridge.SolverOutcome``
records: a ``started`` record, then either an ``ok`` record (solution, candidates,
quality, provenance) or an ``error`` record with the classified error. It never
raises for a solver failure: retries, reroutes and degradation are the
orchestrator's decisions, taken from the error class. No Kafka here.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from qbridge.contracts.convert import outcome_fields, problem_from_avro
from qbridge.contracts.records import (
    ErrorInfo,
    OutcomeStatus,
    SolverOutcome,
    WorkItem,
)
from qbridge.errors import BudgetExceededError, ErrorClass, SolverError, StoppingError, classify
from qbridge.metrics import COST_UNITS, SOLVES, STAGE_DURATION, TRANSPILE_CACHE
from qbridge.problems.base import Problem
from qbridge.solvers.base import Budget, Candidate, Outcome, Solver
from qbridge.solvers.exact import ExactSolver

logger = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]

_OBJECTIVE_RTOL = 1e-9


@dataclass(frozen=True)
class WorkerSettings:
    """How an executor turns a work item into a budget.

    Attributes:
        min_time_s: Below this much time left (limit or deadline), the work is not
            started: an ``over_budget`` error is reported at once.
        default_shots: Shots used when the work item says ``0`` (not specified).
        max_error_chars: Error messages are cut to this length.
        exact_max_variables: Problems with at most this many binary variables (of a
            kind :class:`~qbridge.solvers.exact.ExactSolver` enumerates) are solved
            exactly in-process before the configured solver is tried: proven optimal
            in microseconds to milliseconds, no model build and no worker round trip.
            0 disables it (the quantum executor: a quantum answer is wanted there).
        started_delay_s: A solve's ``started`` record is sent only once it has run this
            long (:class:`~qbridge.executor.announce.StartAnnouncer`): a solve that ends
            sooner goes ``routed -> succeeded`` without a ``running`` in between, and
            the pipeline carries two fewer messages for it. 0 announces every start.
    """

    min_time_s: float = 0.05
    default_shots: int = 4096
    max_error_chars: int = 2000
    exact_max_variables: int = 0
    started_delay_s: float = 0.0


Item = WorkItem | Mapping[str, Any]
"""A work item, typed or as decoded from Avro."""


def _typed(item: Item) -> WorkItem:
    return item if isinstance(item, WorkItem) else WorkItem.from_avro(item)


def started_record(item: Item, now: datetime) -> dict[str, Any]:
    """The ``started`` outcome of a work item."""
    return SolverOutcome.for_item(_typed(item), OutcomeStatus.STARTED, now).to_avro()


def error_record(
    item: Item, exc: BaseException, now: datetime, max_chars: int = 2000
) -> dict[str, Any]:
    """The ``error`` outcome of a work item for ``exc`` (classified)."""
    message = str(exc) or type(exc).__name__
    error = ErrorInfo(classify(exc).value, type(exc).__name__, message[:max_chars])
    return SolverOutcome.for_item(_typed(item), OutcomeStatus.ERROR, now, error=error).to_avro()


def _verified(problem: Problem, c: Candidate) -> Candidate:
    """Re-evaluate a candidate on the original problem; a solver's claim is never trusted."""
    try:
        ev = problem.evaluate(c.assignment)
    except Exception as exc:  # wrong length, non-binary value: a solver bug
        raise SolverError(f"solver returned an invalid assignment: {exc}") from exc
    if ev.feasible != c.feasible or not math.isclose(
        ev.objective, c.objective, rel_tol=_OBJECTIVE_RTOL, abs_tol=_OBJECTIVE_RTOL
    ):
        logger.warning(
            "solver reported objective %s (feasible %s), recomputed %s (feasible %s)",
            c.objective,
            c.feasible,
            ev.objective,
            ev.feasible,
        )
    return Candidate(c.assignment, ev.objective, ev.feasible, c.frequency)


def ok_record(
    item: Item,
    problem: Problem,
    outcome: Outcome,
    queue_s: float,
    now: datetime,
) -> dict[str, Any]:
    """The ``ok`` outcome: solution, candidates and quality, verified; queue time filled in."""
    verified = Outcome(
        best=_verified(problem, outcome.best),
        candidates=tuple(_verified(problem, c) for c in outcome.candidates),
        quality=outcome.quality,
        provenance=outcome.provenance,
    )
    fields = outcome_fields(verified)
    fields["provenance"]["timings"]["queue_ms"] = queue_s * 1000.0
    return SolverOutcome.for_item(
        _typed(item),
        OutcomeStatus.OK,
        now,
        solution=fields["solution"],
        candidates=tuple(fields["candidates"]),
        quality=fields["quality"],
        provenance=fields["provenance"],
    ).to_avro()


def budget_for(item: Item, now: datetime, settings: WorkerSettings) -> tuple[Budget, float]:
    """The solve budget of a work item and its queue time in seconds.

    The time limit is the item's ``time_limit_ms`` capped by what is left until
    its ``deadline_at``.

    Raises:
        BudgetExceededError: Less than ``settings.min_time_s`` is left.
    """
    item = _typed(item)
    queue_s = max(0.0, (now - item.enqueued_at).total_seconds())
    left_s = (item.deadline_at - now).total_seconds()
    limit_s = min(item.time_limit_ms / 1000.0, left_s)
    if limit_s < settings.min_time_s:
        if left_s < settings.min_time_s:
            why = f"deadline passed {-left_s:.3f}s ago" if left_s < 0 else "deadline too close"
        else:
            why = f"time limit {item.time_limit_ms} ms is too small"
        raise BudgetExceededError(
            f"{why}: {max(limit_s, 0.0) * 1000:.0f} ms left, at least "
            f"{settings.min_time_s * 1000:.0f} ms needed (queued {queue_s * 1000:.0f} ms)"
        )
    shots = int(item.shots) if item.shots > 0 else settings.default_shots
    budget = Budget(
        time_limit_s=limit_s, shots=shots, seed=int(item.seed), top_n=max(1, int(item.top_n))
    )
    return budget, queue_s


def execute(
    work_item: Mapping[str, Any],
    solver: Solver | Callable[[Mapping[str, Any]], Solver],
    now: datetime,
    *,
    emit: Emit | None = None,
    settings: WorkerSettings | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[dict[str, Any]]:
    """Run one work item and report it.

    Args:
        work_item: The decoded ``qbridge.WorkItem``.
        solver: The solver, or a function choosing it for the item (e.g. by
            ``backend``); a failure to build it is reported as an error outcome.
        now: When the executor took the item (queue time and deadline are measured
            from it).
        emit: Called with each record as soon as it exists (the ``started`` record
            before the solve begins), in addition to the returned list.
        settings: Budget rules.
        clock: Wall clock for ``produced_at`` of the final record.

    Returns:
        ``[started, ok]``, ``[started, error]``, or ``[error]`` when the work cannot
        start at all (deadline passed: ``over_budget``).
    """
    cfg = settings or WorkerSettings()
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    item = WorkItem.from_avro(work_item)
    out: list[dict[str, Any]] = []

    def _emit(record: dict[str, Any]) -> None:
        out.append(record)
        if emit is not None:
            emit(record)

    try:
        budget, queue_s = budget_for(item, now, cfg)
    except BudgetExceededError as exc:
        logger.warning("not starting %s: %s", item.work_id, exc)
        _emit(error_record(item, exc, now, cfg.max_error_chars))
        return out

    _emit(started_record(item, now))
    t0 = time.monotonic()
    try:
        problem = problem_from_avro(item.problem_type, item.problem)
        chosen = _choose(solver, work_item, problem, cfg)
        outcome = chosen.solve(problem, budget)
    except Exception as exc:
        _emit(_final_record(item, None, exc, queue_s, t0, cfg, clock))
    else:
        _emit(_final_record(item, problem, outcome, queue_s, t0, cfg, clock))
    return out


def _choose(
    solver: Solver | Callable[[Mapping[str, Any]], Solver],
    work_item: Mapping[str, Any],
    problem: Problem,
    cfg: WorkerSettings,
) -> Solver:
    """The item's solver, or the exact one when the problem is small enough for it."""
    chosen = solver if isinstance(solver, Solver) else solver(work_item)
    exact = ExactSolver(cfg.exact_max_variables)
    if cfg.exact_max_variables > 0 and exact.eligibility(problem).eligible:
        return exact
    return chosen


def _final_record(
    item: WorkItem,
    problem: Problem | None,
    result: Outcome | Exception,
    queue_s: float,
    t0: float,
    cfg: WorkerSettings,
    clock: Callable[[], datetime],
) -> dict[str, Any]:
    """The ``ok`` or ``error`` record of a solve that ran (logged either way)."""
    try:
        if isinstance(result, Exception):
            raise result
        assert problem is not None
        record = ok_record(item, problem, result, queue_s, clock())
    except Exception as exc:
        cls = classify(exc)
        log = logger.error if cls is ErrorClass.DEFECT else logger.warning
        log(
            "%s failed after %.3fs (%s): %s",
            item.work_id,
            time.monotonic() - t0,
            cls.value,
            exc,
            exc_info=cls is ErrorClass.DEFECT,
        )
        return error_record(item, exc, clock(), cfg.max_error_chars)
    logger.info(
        "%s solved in %.3fs: objective %s (feasible %s)",
        item.work_id,
        time.monotonic() - t0,
        record["solution"]["objective"],
        record["solution"]["feasible"],
    )
    return record


@runtime_checkable
class GroupSolver(Protocol):
    """A solver that solves compatible work items of one batch together.

    The quantum executor's QAOA solver: compatible items (equal :meth:`batch_key`)
    share each backend call (cross-job batching); each still gets its own outcome.
    """

    def batch_key(self, problem: Problem, budget: Budget) -> Hashable | None:
        """Equal keys mean compatible items; None: this item runs alone."""
        ...

    def solve_group(
        self,
        members: Sequence[tuple[Any, Problem, Budget]],
        *,
        stopping: Callable[[], bool] | None = None,
    ) -> list[Outcome | Exception]:
        """Solve ``(solver, problem, budget)`` members of one key together, in order.

        Each member's solver is the one chosen for its item (a group solver of the
        same key, possibly bound to the item's checkpoints and progress). Once
        ``stopping()`` is true the group ends promptly; the members not finished
        then have a :class:`~qbridge.errors.StoppingError` as their result.
        """
        ...


def budget_class(time_limit_s: float) -> int:
    """The power of two of seconds a time budget falls in (``[2^k, 2^(k+1))`` is class ``k``)."""
    return math.floor(math.log2(max(time_limit_s, 1e-3)))


def batch_groups(
    work_items: Sequence[Mapping[str, Any]],
    solver: Solver | Callable[[Mapping[str, Any]], Solver],
    now: datetime,
    *,
    settings: WorkerSettings | None = None,
    max_size: int = 32,
) -> list[list[int]]:
    """Partition a batch's work items into groups to solve together (cross-job batching).

    Items whose solver is a :class:`GroupSolver`, whose batch keys are equal and
    whose time budgets are of one class (within a factor of two: powers of two of
    seconds, see :func:`budget_class`) form a group (split into chunks of
    ``max_size``), so a short job is not grouped with long ones; every other item
    (another solver, no key, or one that cannot start: :func:`execute` reports why)
    is a group of one.

    Returns:
        Lists of indices into ``work_items``, in order of first appearance.
    """
    cfg = settings or WorkerSettings()
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    groups: dict[Hashable, list[int]] = {}
    for i, raw in enumerate(work_items):
        key: Hashable | None = None
        try:
            item = WorkItem.from_avro(raw)
            budget, _ = budget_for(item, now, cfg)
            problem = problem_from_avro(item.problem_type, item.problem)
            chosen = _choose(solver, raw, problem, cfg)
            if isinstance(chosen, GroupSolver):
                solver_key = chosen.batch_key(problem, budget)
                if solver_key is not None:
                    key = (solver_key, budget_class(budget.time_limit_s))
        except Exception as exc:  # reported by execute() when the item runs alone
            logger.debug("item %d runs alone: %s", i, exc)
        groups.setdefault(("alone", i) if key is None else ("group", key), []).append(i)
    size = max(1, max_size)
    return [
        members[start : start + size]
        for members in groups.values()
        for start in range(0, len(members), size)
    ]


def execute_group(
    work_items: Sequence[Mapping[str, Any]],
    solver: Solver | Callable[[Mapping[str, Any]], Solver],
    now: datetime,
    *,
    emits: Sequence[Emit] | None = None,
    settings: WorkerSettings | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    stopping: Callable[[], bool] | None = None,
) -> list[list[dict[str, Any]]]:
    """Run compatible work items together (one group of :func:`batch_groups`).

    Each item is reported exactly as by :func:`execute` (``started`` then ``ok`` or
    ``error``; ``[error]`` when its deadline leaves no time); only the solves of the
    items that start are shared, through the first solver's
    :meth:`GroupSolver.solve_group`. An item whose problem or solver cannot be built,
    or whose solver is no group solver, is reported or solved on its own.

    Args:
        work_items: Decoded ``qbridge.WorkItem`` values.
        solver: As for :func:`execute`.
        now: When the executor took the items.
        emits: One callback per item, called with each of its records as soon as
            it exists (all ``started`` records before the shared solve begins).
        settings: Budget rules.
        clock: Wall clock for ``produced_at`` of the final records.
        stopping: Polled by the shared solve (the consumer shutting down).

    Returns:
        Each item's records, in order.

    Raises:
        StoppingError: ``stopping`` interrupted the shared solve: the items it left
            unfinished have no final record (the others do); the consumer hands the
            batch back, so they are redelivered.
    """
    cfg = settings or WorkerSettings()
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    out: list[list[dict[str, Any]]] = [[] for _ in work_items]

    def _emit(i: int, record: dict[str, Any]) -> None:
        out[i].append(record)
        if emits is not None:
            emits[i](record)

    t0 = time.monotonic()
    members: list[tuple[int, WorkItem, float, tuple[GroupSolver, Problem, Budget]]] = []
    for i, raw in enumerate(work_items):
        item = WorkItem.from_avro(raw)
        try:
            budget, queue_s = budget_for(item, now, cfg)
        except BudgetExceededError as exc:
            logger.warning("not starting %s: %s", item.work_id, exc)
            _emit(i, error_record(item, exc, now, cfg.max_error_chars))
            continue
        _emit(i, started_record(item, now))
        problem: Problem | None = None
        try:
            problem = problem_from_avro(item.problem_type, item.problem)
            chosen = _choose(solver, raw, problem, cfg)
            if not isinstance(chosen, GroupSolver):
                _emit(
                    i,
                    _final_record(
                        item, problem, chosen.solve(problem, budget), queue_s, t0, cfg, clock
                    ),
                )
                continue
        except Exception as exc:
            _emit(i, _final_record(item, problem, exc, queue_s, t0, cfg, clock))
            continue
        members.append((i, item, queue_s, (chosen, problem, budget)))
    if not members:
        return out
    lead = members[0][3][0]
    try:
        results = lead.solve_group([m[3] for m in members], stopping=stopping)
    except Exception as exc:  # a defect of the group itself: every member reports it
        results = [exc] * len(members)
    interrupted = 0
    for (i, item, queue_s, (_, problem, _)), result in zip(members, results, strict=True):
        if isinstance(result, StoppingError):
            interrupted += 1  # no outcome: the item is redelivered
            continue
        _emit(i, _final_record(item, problem, result, queue_s, t0, cfg, clock))
    if interrupted:
        raise StoppingError(f"shutting down: {interrupted} item(s) of a group not finished")
    return out


def observe(record: Mapping[str, Any], service: str, backend: str) -> None:
    """Export the metrics of a final outcome record (solves, stage times, cost, cache)."""
    status = record["status"]
    if status == "started":
        return
    route = record["route"]
    if status == "error":
        SOLVES.labels(route, backend, (record["error"] or {}).get("error_class", "defect")).inc()
        return
    SOLVES.labels(route, backend, "ok").inc()
    prov = record.get("provenance") or {}
    timings = prov.get("timings") or {}
    for stage in ("queue", "transpile", "execute", "postprocess"):
        ms = timings.get(f"{stage}_ms")
        if ms:
            STAGE_DURATION.labels(service, stage).observe(ms / 1000.0)
    cost = prov.get("cost_units") or 0.0
    if cost > 0:
        COST_UNITS.labels(route).inc(cost)
    if prov.get("cache_hit") is not None:
        TRANSPILE_CACHE.labels("hit" if prov["cache_hit"] else "miss").inc()
