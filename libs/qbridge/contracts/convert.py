"""Conversions between Avro records and domain objects: used only at the service edges."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from qbridge.errors import InvalidProblemError
from qbridge.problems.base import Problem
from qbridge.problems.limits import Limits
from qbridge.problems.registry import problem_from_dict
from qbridge.solvers.base import Candidate, Outcome, Provenance, Quality

# problem_type -> (Avro record name, its distinctive field set)
_BRANCHES: dict[str, tuple[str, frozenset[str]]] = {
    "maxcut": ("qbridge.MaxCutProblem", frozenset({"num_nodes", "edges"})),
    "qubo": ("qbridge.QuboProblem", frozenset({"num_variables", "linear", "quadratic", "offset"})),
    "ising": ("qbridge.IsingProblem", frozenset({"h", "couplings", "offset"})),
    "knapsack": ("qbridge.KnapsackProblem", frozenset({"values", "weights", "capacity"})),
    "portfolio": (
        "qbridge.PortfolioProblem",
        frozenset({"expected_returns", "covariance", "budget", "risk_aversion"}),
    ),
    "jobshop": ("qbridge.JobShopProblem", frozenset({"jobs"})),
    "classification": ("qbridge.ClassificationProblem", frozenset({"features", "labels", "folds"})),
}


def branch_type(avro_problem: Mapping[str, Any]) -> str | None:
    """Which problem type a decoded Avro problem branch is (by its field set)."""
    keys = frozenset(avro_problem)
    for kind, (_, fields) in _BRANCHES.items():
        if keys == fields:
            return kind
    return None


def problem_from_avro(
    problem_type: str, avro_problem: Mapping[str, Any], limits: Limits | None = None
) -> Problem:
    """Validate and normalize the problem of a request/envelope/work item.

    Args:
        problem_type: The declared type.
        avro_problem: The decoded Avro problem record.
        limits: If given, sizes are checked first, before any per-term validation.

    Raises:
        InvalidProblemError: Unknown type, a branch that contradicts ``problem_type``,
            or any semantic validation failure (with the field path).
    """
    actual = branch_type(avro_problem) if isinstance(avro_problem, Mapping) else None
    if not isinstance(problem_type, str) or problem_type not in _BRANCHES:
        raise InvalidProblemError(
            f"unknown problem type {problem_type!r} (known: {', '.join(sorted(_BRANCHES))})",
            field="problem_type",
        )
    if actual != problem_type:
        raise InvalidProblemError(
            f"problem_type is {problem_type!r} but the problem is a {actual or 'unknown'} record",
            field="problem",
        )
    try:
        data = _avro_to_dict(problem_type, avro_problem)
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        # Only reachable with records that did not come through the Avro decoder.
        raise InvalidProblemError(
            f"is not a valid {problem_type} record ({type(exc).__name__}: {exc})", field="problem"
        ) from exc
    return problem_from_dict(problem_type, data, limits)


def _avro_to_dict(problem_type: str, p: Mapping[str, Any]) -> dict[str, Any]:
    data: dict[str, Any]
    if problem_type == "maxcut":
        data = {
            "num_nodes": p["num_nodes"],
            "edges": [[e["u"], e["v"], e["weight"]] for e in p["edges"]],
        }
    elif problem_type == "qubo":
        data = {
            "num_variables": p["num_variables"],
            "linear": p["linear"],
            "quadratic": [[t["i"], t["j"], t["value"]] for t in p["quadratic"]],
            "offset": p["offset"],
        }
    elif problem_type == "ising":
        data = {
            "h": p["h"],
            "J": [[t["i"], t["j"], t["value"]] for t in p["couplings"]],
            "offset": p["offset"],
        }
    elif problem_type == "jobshop":
        data = {"jobs": [[[op["machine"], op["duration"]] for op in job] for job in p["jobs"]]}
    else:  # knapsack, portfolio, classification: same shape on both sides
        data = dict(p)
    return data


def problem_to_avro(problem: Problem) -> tuple[str, dict[str, Any]]:
    """The Avro union branch of a (normalized) problem, in fastavro's ``(name, record)`` form."""
    d = problem.to_dict()
    kind = problem.kind
    record: dict[str, Any]
    if kind == "maxcut":
        record = {
            "num_nodes": d["num_nodes"],
            "edges": [{"u": i, "v": j, "weight": float(w)} for i, j, w in d["edges"]],
        }
    elif kind == "qubo":
        record = {
            "num_variables": d["num_variables"],
            "linear": [float(v) for v in d["linear"]],
            "quadratic": [{"i": i, "j": j, "value": float(v)} for i, j, v in d["quadratic"]],
            "offset": float(d["offset"]),
        }
    elif kind == "ising":
        record = {
            "h": [float(v) for v in d["h"]],
            "couplings": [{"i": i, "j": j, "value": float(v)} for i, j, v in d["J"]],
            "offset": float(d.get("offset", 0.0)),
        }
    elif kind == "jobshop":
        record = {"jobs": [[{"machine": m, "duration": du} for m, du in job] for job in d["jobs"]]}
    elif kind in _BRANCHES:
        record = dict(d)
    else:
        raise InvalidProblemError(f"no Avro form for problem type {kind!r}", field="problem_type")
    return _BRANCHES[kind][0], record


def solution_to_avro(c: Candidate) -> dict[str, Any]:
    """A candidate as a ``qbridge.Solution`` record."""
    return {
        "assignment": [int(v) for v in c.assignment],
        "objective": float(c.objective),
        "feasible": bool(c.feasible),
        "frequency": c.frequency,
    }


def solution_from_avro(s: Mapping[str, Any]) -> Candidate:
    """A ``qbridge.Solution`` record as a candidate."""
    return Candidate(tuple(s["assignment"]), s["objective"], s["feasible"], s.get("frequency"))


def quality_to_avro(q: Quality) -> dict[str, Any]:
    """Quality signals as a ``qbridge.Quality`` record."""
    return {
        "proven_optimal": q.proven_optimal,
        "bound": q.bound,
        "gap": q.gap,
        "expected_objective": q.expected_objective,
        "confidence": q.confidence,
    }


def provenance_to_avro(p: Provenance) -> dict[str, Any]:
    """Provenance as a ``qbridge.Provenance`` record (settings as canonical JSON)."""
    return {
        "route": p.route.value,
        "solver": p.solver,
        "backend": p.backend,
        "backend_version": p.backend_version,
        "sdk_versions": dict(p.sdk_versions),
        "settings_json": json.dumps(p.settings, sort_keys=True, default=str),
        "circuit_depth": p.circuit_depth,
        "circuit_width": p.circuit_width,
        "shots": p.shots,
        "seed": p.seed,
        "optimizer_iterations": p.optimizer_iterations,
        "timings": {
            "queue_ms": p.timings.queue_s * 1000,
            "transpile_ms": p.timings.transpile_s * 1000,
            "execute_ms": p.timings.execute_s * 1000,
            "postprocess_ms": p.timings.postprocess_s * 1000,
        },
        "cache_hit": p.cache_hit,
        "cost_units": float(p.cost_units),
    }


def outcome_fields(outcome: Outcome) -> dict[str, Any]:
    """The solution/candidates/quality/provenance fields shared by outcome records."""
    return {
        "solution": solution_to_avro(outcome.best),
        "candidates": [solution_to_avro(c) for c in outcome.candidates],
        "quality": quality_to_avro(outcome.quality),
        "provenance": provenance_to_avro(outcome.provenance),
    }


def problem_branch(
    problem_type: str, avro_problem: Mapping[str, Any]
) -> tuple[str, dict[str, Any]]:
    """An already-normalized Avro problem in fastavro's explicit ``(name, record)`` union form."""
    if problem_type not in _BRANCHES:
        raise InvalidProblemError(f"unknown problem type {problem_type!r}", field="problem_type")
    return _BRANCHES[problem_type][0], dict(avro_problem)
