"""The local solver pool: instant answers, then the portfolio by a deadline, in workers."""

from __future__ import annotations

import threading
import time
from typing import Any

from qbridge.problems.base import Problem
from qbridge.problems.registry import problem_from_dict
from qbridge.samples import sample_mix
from qbridge.solvers.base import Budget
from qbridge.solvers.pool import LocalSolverPool, LocalTask, solve_locally
from qbridge.solvers.portfolio import ClassicalPortfolio, better, instant_outcome


def knapsack() -> Problem:
    return problem_from_dict(
        "knapsack", {"values": [3.0, 4.0, 5.0], "weights": [2, 3, 4], "capacity": 5}
    )


def test_instant_answer_then_the_portfolio_in_the_pool() -> None:
    p = knapsack()
    h = instant_outcome(p, 1)
    assert h is not None and h.best.feasible and h.provenance.solver == "greedy"
    for label, problem, _ in sample_mix():
        inst = instant_outcome(problem, 1)
        assert inst is not None and inst.best.feasible, label
    pool = LocalSolverPool(workers=1)
    try:
        task = pool.submit(p, 1, time.monotonic() + 1.0)
        assert task is not None and task.done.wait(5)
        assert task.outcome is not None and task.outcome.quality.proven_optimal
        assert better(p, h, task.outcome) is task.outcome  # ties go to the second (richer)
        assert task.outcome.best.objective == 7.0
    finally:
        pool.close()


def test_pool_is_deadline_ordered_bounded_and_drops_stale_work() -> None:
    p = problem_from_dict("maxcut", {"num_nodes": 3, "edges": [[0, 1, 1.0], [1, 2, 1.0]]})
    pool = LocalSolverPool(workers=1, queue_limit=2)
    gate = threading.Event()
    order: list[float] = []
    solver = pool._workers[0].solver
    assert solver is not None
    real = solver.run

    def slow_run(problem: Any, budget: Any, emit: Any = None) -> Any:
        gate.wait(5)
        order.append(budget.time_limit_s)
        return real(problem, budget, emit)

    solver.run = slow_run  # type: ignore[method-assign]
    try:
        now = time.monotonic()
        first = pool.submit(p, 1, now + 10)  # taken by the worker at once, blocks on the gate
        time.sleep(0.05)
        late = pool.submit(p, 1, now + 8)
        early = pool.submit(p, 1, now + 3)
        assert pool.submit(p, 1, now + 4) is None  # queue full
        assert pool.submit(p, 1, now + 0.001) is None  # no useful time left
        assert first and late and early
        late.cancel()
        gate.set()
        assert early.done.wait(10) and late.done.wait(10)
        assert early.outcome is not None and late.outcome is None  # cancelled: never started
        assert len(order) == 2
    finally:
        pool.close()


def test_workers_warm_up_on_the_problems_given() -> None:
    problems = [problem for _label, problem, _over in sample_mix(seed=1)]
    pool = LocalSolverPool(workers=1, warm_up_problems=problems)
    solver = pool._workers[0].solver
    assert solver is not None
    seen: list[str] = []
    real = solver.run

    def counting_run(problem: Any, budget: Any, emit: Any = None) -> Any:
        seen.append(problem.kind)
        return real(problem, budget, emit)

    solver.run = counting_run  # type: ignore[method-assign]
    try:
        pool.wait_ready(timeout=60)
        assert seen == [p.kind for p in problems]
    finally:
        pool.close()


def test_a_failing_solver_reports_the_error_and_ends() -> None:
    class Broken(ClassicalPortfolio):
        def run(self, problem: Any, budget: Budget, emit: Any = None) -> Any:
            raise ValueError("no model")

    task = LocalTask(time.monotonic() + 1, 0, knapsack(), 1)
    events: list[str] = []

    def emit(kind: str, value: Any) -> None:
        events.append(kind)
        task.on(kind, value)

    solve_locally(Broken(), task.problem, 1, 0.1, emit)
    assert events == ["error", "done"]
    assert task.error == "ValueError: no model" and task.best() is None
