"""Benchmark of the classical portfolio (``qbridge.solvers.portfolio``).

1. Gset MaxCut graphs (public, read from ``../shared/bench-data/gset/`` when present;
   skipped with a message when absent): ratio of the cut to the best known cut at
   1 s / 2 s / 10 s per graph, side by side with dwave-samplers used alone in the same
   time (repeated default ``SimulatedAnnealingSampler`` calls, best kept), in one run.
2. Knapsack and portfolio selection (seeded random instances): the portfolio at 1 s and
   2 s against a long CP-SAT run (``--ref-seconds``, 60 s by default): ratio to its
   proven optimum where it proves one, else to the best it found.

Usage::

    .venv/bin/python bench/bench_classical.py                  # ~10 min on 2 cores
    .venv/bin/python bench/bench_classical.py --quick          # ~2 min (1 s / 2 s, short refs)

Prints the tables and writes them as markdown (and the raw rows as JSON) to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from dwave.samplers import SimulatedAnnealingSampler

from gset import GSET_DIR, load_gset
from qbridge.problems import Knapsack, Problem
from qbridge.problems.maxcut import MaxCut
from qbridge.problems.portfolio import Portfolio
from qbridge.solvers.anneal import DWAVE_SAMPLERS_VERSION, BinaryModel
from qbridge.solvers.base import Budget
from qbridge.solvers.classical import ORTOOLS_VERSION, CpSatSolver
from qbridge.solvers.portfolio import ClassicalPortfolio

RESULTS = Path(__file__).resolve().parent / "results"


def library_alone(problem: MaxCut, seconds: float, seed: int) -> tuple[float, int]:
    """dwave-samplers used alone: default SA calls (1 read) until ``seconds``; best cut."""
    started = time.monotonic()
    total = sum(w for _, _, w in problem.edges)
    bqm = BinaryModel.ising(np.zeros(problem.num_nodes), problem.edges).bqm()
    sampler = SimulatedAnnealingSampler()
    best, calls = -float("inf"), 0
    while True:
        t = time.monotonic()
        ss = sampler.sample(bqm, num_reads=1, seed=seed + calls)
        calls += 1
        best = max(best, (total - float(ss.first.energy)) / 2)
        per_call = time.monotonic() - t
        if time.monotonic() + per_call > started + seconds:
            return best, calls


def gset_rows(budgets: list[float], seed: int) -> list[dict[str, Any]]:
    graphs = load_gset()
    if not graphs:
        print(f"\nGset graphs not found in {GSET_DIR}: MaxCut part skipped.")
        return []
    print(f"\n== Gset MaxCut (public graphs read from {GSET_DIR}) ==")
    portfolio = ClassicalPortfolio()
    rows = []
    for g in graphs:
        row: dict[str, Any] = {
            "graph": g.name,
            "nodes": g.problem.num_nodes,
            "edges": len(g.problem.edges),
            "best_known": g.best_known,
        }
        for t in budgets:
            s = time.perf_counter()
            out = portfolio.solve(g.problem, Budget(time_limit_s=t, seed=seed))
            row[f"portfolio_{t:g}s"] = out.best.objective / g.best_known
            row[f"portfolio_{t:g}s_wall"] = time.perf_counter() - s
            row[f"portfolio_{t:g}s_solver"] = out.provenance.solver
            cut, calls = library_alone(g.problem, t, seed)
            row[f"library_{t:g}s"] = cut / g.best_known
            row[f"library_{t:g}s_calls"] = calls
        rows.append(row)
        print(
            f"{g.name:<4} n={row['nodes']:<5} "
            + "  ".join(
                f"{t:g}s: {row[f'portfolio_{t:g}s']:.4f} (alone {row[f'library_{t:g}s']:.4f})"
                for t in budgets
            ),
            flush=True,
        )
    return rows


def knapsack(n: int, rng: random.Random) -> Knapsack:
    weights = [rng.randint(10, 1000) for _ in range(n)]
    # Values correlated with weights: the hard kind for greedy.
    values = [round(w + rng.uniform(0, 100), 2) for w in weights]
    return Knapsack(values=tuple(values), weights=tuple(weights), capacity=sum(weights) // 3)


def portfolio(n: int, rng: random.Random) -> Portfolio:
    a = np.array([[rng.gauss(0, 1) for _ in range(n)] for _ in range(n + 5)])
    cov = (a.T @ a) / (n + 5) * 0.05
    mu = [rng.uniform(0.0, 0.3) for _ in range(n)]
    return Portfolio(
        expected_returns=tuple(mu),
        covariance=tuple(tuple(r) for r in cov.tolist()),
        budget=max(2, n // 5),
        risk_aversion=1.0,
    )


def constrained_rows(
    budgets: list[float], ref_s: float, seed: int, quick: bool
) -> list[dict[str, Any]]:
    sizes = {
        "knapsack": [50, 500] if quick else [50, 200, 1000, 5000],
        "portfolio": [20, 60] if quick else [20, 40, 80, 150],
    }
    makers = {"knapsack": knapsack, "portfolio": portfolio}
    print(f"\n== Knapsack and portfolio vs a {ref_s:g} s CP-SAT run (seeded random instances) ==")
    solver = ClassicalPortfolio()
    cpsat = CpSatSolver()
    rows = []
    for kind, ns in sizes.items():
        for n in ns:
            problem: Problem = makers[kind](n, random.Random(f"{kind}-{n}"))
            ref = cpsat.solve(problem, Budget(time_limit_s=ref_s, seed=seed))
            row: dict[str, Any] = {
                "type": kind,
                "n": n,
                "reference": ref.best.objective,
                "reference_proven": ref.quality.proven_optimal,
            }
            for t in budgets:
                out = solver.solve(problem, Budget(time_limit_s=t, seed=seed))
                row[f"portfolio_{t:g}s"] = out.best.objective
                row[f"portfolio_{t:g}s_feasible"] = out.best.feasible
                row[f"ratio_{t:g}s"] = ratio(problem, out.best.objective, ref.best.objective)
            rows.append(row)
            print(
                f"{kind:<9} n={n:<5} ref {'optimum' if row['reference_proven'] else 'best'} "
                f"{row['reference']:.4f}  "
                + "  ".join(f"{t:g}s: {row[f'ratio_{t:g}s']:.4f}" for t in budgets),
                flush=True,
            )
    return rows


def ratio(problem: Problem, value: float, ref: float) -> float:
    """Quality relative to the reference, 1.0 = as good, > 1 better (either sense).

    For minimized objectives (portfolio: risk minus return, negative when good) the
    ratio is ``1 + (ref - value) / |ref|``.
    """
    if problem.sense.value == "maximize":
        return value / ref if ref else 1.0
    return 1.0 + (ref - value) / max(1e-12, abs(ref))


def markdown(
    gset: list[dict[str, Any]], cons: list[dict[str, Any]], budgets: list[float], ref_s: float
) -> str:
    cons_budgets = budgets[:2]
    lines = [
        f"# bench_classical ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"dwave-samplers {DWAVE_SAMPLERS_VERSION}, ortools {ORTOOLS_VERSION})",
        "",
    ]
    if gset:
        lines += [
            f"Gset MaxCut (public graphs read from `{GSET_DIR}`): cut / best known cut. "
            "*alone* = dwave-samplers' SimulatedAnnealingSampler with default settings, "
            "repeated within the same time, best kept.",
            "",
            "| graph | nodes | edges | "
            + " | ".join(f"portfolio {t:g} s | alone {t:g} s" for t in budgets)
            + " |",
            "|---|---|---|" + "---|---|" * len(budgets),
        ]
        for r in gset:
            lines.append(
                f"| {r['graph']} | {r['nodes']} | {r['edges']} | "
                + " | ".join(
                    f"{r[f'portfolio_{t:g}s']:.4f} | {r[f'library_{t:g}s']:.4f}" for t in budgets
                )
                + " |"
            )
        means = [
            f"{statistics.fmean(r[f'portfolio_{t:g}s'] for r in gset):.4f} | "
            f"{statistics.fmean(r[f'library_{t:g}s'] for r in gset):.4f}"
            for t in budgets
        ]
        lines.append("| **mean** | | | " + " | ".join(means) + " |")
        lines.append("")
    else:
        lines += [f"Gset graphs not found in `{GSET_DIR}`: MaxCut part skipped.", ""]
    if cons:
        lines += [
            f"Knapsack / portfolio: quality relative to a {ref_s:g} s CP-SAT run (its proven "
            "optimum where it proved one, else its best); 1.0 = as good, > 1 better.",
            "",
            "| type | n | reference | "
            + " | ".join(f"portfolio {t:g} s" for t in cons_budgets)
            + " |",
            "|---|---|---|" + "---|" * len(cons_budgets),
        ]
        for r in cons:
            kind = "optimum" if r["reference_proven"] else "best found"
            lines.append(
                f"| {r['type']} | {r['n']} | {kind} {r['reference']:.4f} | "
                + " | ".join(f"{r[f'ratio_{t:g}s']:.4f}" for t in cons_budgets)
                + " |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 s / 2 s only, short references")
    parser.add_argument("--ref-seconds", type=float, default=None, help="CP-SAT reference run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-gset", action="store_true")
    parser.add_argument("--skip-constrained", action="store_true")
    args = parser.parse_args()
    budgets = [1.0, 2.0] if args.quick else [1.0, 2.0, 10.0]
    ref_s = args.ref_seconds or (10.0 if args.quick else 60.0)
    started = time.perf_counter()
    gset = [] if args.skip_gset else gset_rows(budgets, args.seed)
    cons = (
        [] if args.skip_constrained else constrained_rows(budgets[:2], ref_s, args.seed, args.quick)
    )
    md = markdown(gset, cons, budgets, ref_s)
    print("\n" + md)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = RESULTS / f"bench_classical-{'quick-' if args.quick else ''}{stamp}"
    base.with_suffix(".md").write_text(md)
    report = {
        "benchmark": "bench_classical",
        "created_at": datetime.now(UTC).isoformat(),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "versions": {"dwave-samplers": DWAVE_SAMPLERS_VERSION, "ortools": ORTOOLS_VERSION},
        "budgets_s": budgets,
        "reference_s": ref_s,
        "gset": gset,
        "constrained": cons,
        "elapsed_s": time.perf_counter() - started,
    }
    base.with_suffix(".json").write_text(json.dumps(report, indent=2))
    print(f"wrote {base}.md and .json ({report['elapsed_s']:.0f} s)")


if __name__ == "__main__":
    main()
