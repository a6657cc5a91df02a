"""A sample workload: a mix of every problem type, as an upstream system would publish it.

Used by ``make run``, the end-to-end tests and the benchmarks.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

from qbridge.contracts.convert import problem_to_avro
from qbridge.problems.base import Problem
from qbridge.problems.registry import problem_from_dict


def regular_maxcut(n: int, rng: random.Random, degree: int = 3) -> Problem:
    """A random ``degree``-regular weighted MaxCut (pairing model, retried until simple)."""
    while True:
        stubs = [v for v in range(n) for _ in range(degree)]
        rng.shuffle(stubs)
        pairs = {tuple(sorted(stubs[i : i + 2])) for i in range(0, len(stubs), 2)}
        if len(pairs) == n * degree // 2 and all(a != b for a, b in pairs):
            edges = [[a, b, round(rng.uniform(0.5, 2.0), 3)] for a, b in sorted(pairs)]
            return problem_from_dict("maxcut", {"num_nodes": n, "edges": edges})


def sample_mix(seed: int = 7) -> list[tuple[str, Problem, dict[str, Any]]]:
    """``(label, problem, request overrides)`` covering every type and routing policy."""
    rng = random.Random(seed)
    n = 6
    cov = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i, n):
            v = round(rng.uniform(0.0, 0.05), 4) if i != j else round(rng.uniform(0.05, 0.2), 4)
            cov[i][j] = cov[j][i] = v
    return [
        ("maxcut-8", regular_maxcut(8, rng), {}),
        ("maxcut-10-race", regular_maxcut(10, rng), {"fallback_policy": "race"}),
        (
            "qubo-6",
            problem_from_dict(
                "qubo",
                {
                    "num_variables": 6,
                    "linear": [round(rng.uniform(-2, 2), 2) for _ in range(6)],
                    "quadratic": [
                        [i, j, round(rng.uniform(-2, 2), 2)]
                        for i in range(6)
                        for j in range(i + 1, 6)
                        if rng.random() < 0.5
                    ],
                    "offset": 0.0,
                },
            ),
            {},
        ),
        (
            "ising-5",
            problem_from_dict(
                "ising",
                {
                    "h": [round(rng.uniform(-1, 1), 2) for _ in range(5)],
                    "J": [[i, i + 1, round(rng.uniform(-1, 1), 2)] for i in range(4)],
                    "offset": 0.0,
                },
            ),
            {},
        ),
        (
            "knapsack-6",
            problem_from_dict(
                "knapsack",
                {
                    "values": [float(rng.randint(1, 20)) for _ in range(6)],
                    "weights": [rng.randint(1, 9) for _ in range(6)],
                    "capacity": 15,
                },
            ),
            {},
        ),
        (
            "portfolio-6",
            problem_from_dict(
                "portfolio",
                {
                    "expected_returns": [round(rng.uniform(0.01, 0.2), 3) for _ in range(n)],
                    "covariance": cov,
                    "budget": 3,
                    "risk_aversion": 0.5,
                },
            ),
            {"fallback_policy": "classical_only"},
        ),
        (
            "jobshop-3x3",
            problem_from_dict(
                "jobshop",
                {
                    "jobs": [
                        [[0, 3], [1, 2], [2, 2]],
                        [[0, 2], [2, 1], [1, 4]],
                        [[1, 4], [2, 3], [0, 1]],
                    ]
                },
            ),
            {},
        ),
    ]


def problem_request(
    problem: Problem,
    tenant: str = "demo",
    request_id: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A ``qbridge.ProblemRequest`` record for ``problem``."""
    record: dict[str, Any] = {
        "request_id": request_id or str(uuid.uuid4()),
        "idempotency_key": None,
        "tenant": tenant,
        "problem_type": problem.kind,
        "problem": problem_to_avro(problem),
        "timeout_ms": 20_000,
        "fallback_policy": "auto",
        "priority": 5,
        "shot_budget": 2048,
        "seed": None,
        "correlation_id": None,
        "tags": {"source": "sample"},
        "created_at": datetime.now(UTC),
    }
    record.update(overrides)
    return record
