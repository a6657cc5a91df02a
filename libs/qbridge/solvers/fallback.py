"""A last-resort answer computed in-process in milliseconds, when no executor answered in time.

The platform promises a safe answer whenever a feasible one is easy to find;
this is what the orchestrator uses when the deadline comes and every executor
is down, dead or stuck.
"""

from __future__ import annotations

import time

from qbridge.problems.base import Problem
from qbridge.problems.classification import Classification
from qbridge.problems.knapsack import Knapsack
from qbridge.problems.portfolio import Portfolio
from qbridge.problems.scheduling import JobShop
from qbridge.solvers import heuristics
from qbridge.solvers.base import Candidate


def last_resort(problem: Problem, seed: int, time_limit_s: float = 0.05) -> Candidate | None:
    """Best heuristic candidate found within ``time_limit_s`` (None if none is feasible).

    Args:
        problem: The original problem.
        seed: Seed for the randomized local search.
        time_limit_s: Wall-clock budget.

    Returns:
        The best feasible candidate, evaluated on the original problem, or None.
    """
    deadline = time.monotonic() + time_limit_s
    assignments: list[tuple[int, ...]]
    if isinstance(problem, Knapsack):
        assignments = [a for a, _ in heuristics.knapsack_greedy(problem).solutions]
    elif isinstance(problem, Portfolio):
        assignments = [a for a, _ in heuristics.portfolio_greedy(problem).solutions]
    elif isinstance(problem, JobShop):
        assignments = [a for a, _ in heuristics.jobshop_dispatch(problem).solutions]
    elif isinstance(problem, Classification):
        # No model trains in milliseconds: the majority class, the accuracy floor.
        majority = max(problem.classes, key=lambda c: (problem.labels.count(c), -c))
        assignments = [(majority,) * problem.num_variables]
    else:
        enc = problem.to_qubo()
        res = heuristics.qubo_local_search(enc.qubo, seed=seed, pool_size=3, deadline=deadline)
        assignments = [enc.decode(bits) for bits, _ in res.solutions]
    best: Candidate | None = None
    for a in assignments:
        ev = problem.evaluate(a)
        if ev.feasible and (best is None or problem.is_better(ev.objective, best.objective)):
            best = Candidate(tuple(a), ev.objective, True)
    return best
