"""A last-resort answer computed in-process, when no executor answered in time.

The platform promises a safe answer whenever a feasible one is easy to find;
this is what the orchestrator uses when the deadline comes and every executor
is down, dead or stuck. It is the classical portfolio
(:class:`~qbridge.solvers.portfolio.ClassicalPortfolio`) with a short budget.
"""

from __future__ import annotations

import logging

from qbridge.problems.base import Problem
from qbridge.solvers.base import Budget, Candidate
from qbridge.solvers.portfolio import ClassicalPortfolio

logger = logging.getLogger(__name__)

_PORTFOLIO = ClassicalPortfolio()


def last_resort(problem: Problem, seed: int, time_limit_s: float = 0.05) -> Candidate | None:
    """Best feasible candidate found within about ``time_limit_s`` (None if none is).

    Args:
        problem: The original problem.
        seed: Seed of the randomized searches.
        time_limit_s: Wall-clock budget.

    Returns:
        The best feasible candidate, evaluated on the original problem, or None.
    """
    try:
        best = _PORTFOLIO.solve(problem, Budget(time_limit_s=time_limit_s, seed=seed)).best
    except Exception:
        logger.exception("last-resort answer failed on a %s problem", problem.kind)
        return None
    return best if best.feasible else None
