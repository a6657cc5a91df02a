"""Solvers behind one interface: ``solve(problem, budget) -> Outcome``."""

from qbridge.solvers.base import (
    Budget,
    Candidate,
    Eligibility,
    Outcome,
    Provenance,
    Quality,
    Route,
    Solver,
    Timings,
    rank_candidates,
)

__all__ = [
    "Budget",
    "Candidate",
    "Eligibility",
    "Outcome",
    "Provenance",
    "Quality",
    "Route",
    "Solver",
    "Timings",
    "rank_candidates",
]
