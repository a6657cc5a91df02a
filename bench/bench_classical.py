"""Benchmark of the classical route (CP-SAT + warm start) on MaxCut.

Two questions:

1. Time to proven optimum by size (``tto``): CP-SAT with a generous limit on
   3-regular (sparse) and G(n, 0.5) (dense) weighted graphs.
2. Fallback quality (``quality``): what the classical fallback returns within a
   1 s budget, compared with CP-SAT given 30 s, on graphs up to 200 nodes.
   Reported as ratios of cut weights (1.0 = as good as the 30 s run) plus the
   gap to the 30 s run's proven bound. The heuristic warm start alone is
   reported too.

Usage::

    .venv/bin/python bench/bench_classical.py            # full run (~30 min on 2 cores)
    .venv/bin/python bench/bench_classical.py --quick    # smoke run (~1 min)

Prints tables and writes JSON to ``bench/results/``.
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

from qbridge.problems.maxcut import MaxCut
from qbridge.solvers.base import Budget
from qbridge.solvers.classical import ORTOOLS_VERSION, CpSatSettings, CpSatSolver
from qbridge.solvers.heuristics import qubo_local_search

RESULTS = Path(__file__).resolve().parent / "results"


def regular_graph(n: int, rng: random.Random, degree: int = 3) -> MaxCut:
    """Random ``degree``-regular graph (pairing model, retried until simple), weights 0.5..2."""
    while True:
        stubs = [v for v in range(n) for _ in range(degree)]
        rng.shuffle(stubs)
        pairs = {tuple(sorted(stubs[i : i + 2])) for i in range(0, len(stubs), 2)}
        if len(pairs) == n * degree // 2 and all(a != b for a, b in pairs):
            edges = [[a, b, round(rng.uniform(0.5, 2.0), 3)] for a, b in sorted(pairs)]
            return MaxCut.from_dict({"num_nodes": n, "edges": edges})


def dense_graph(n: int, rng: random.Random, p: float = 0.5) -> MaxCut:
    """G(n, p) with weights 0.5..2."""
    edges = [
        [i, j, round(rng.uniform(0.5, 2.0), 3)]
        for i in range(n)
        for j in range(i + 1, n)
        if rng.random() < p
    ]
    return MaxCut.from_dict({"num_nodes": n, "edges": edges})


FAMILIES = {"3-regular": regular_graph, "dense-0.5": dense_graph}


def instance(family: str, n: int, seed: int) -> MaxCut:
    # 3-regular graphs need an even node count.
    n = n + (n % 2) if family == "3-regular" else n
    return FAMILIES[family](n, random.Random(f"{family}-{n}-{seed}"))


def time_to_optimal(sizes: list[int], seeds: int, limit: float) -> list[dict[str, Any]]:
    solver = CpSatSolver()
    rows = []
    for family in FAMILIES:
        for n in sizes:
            runs = []
            for seed in range(seeds):
                p = instance(family, n, seed)
                t = time.perf_counter()
                out = solver.solve(p, Budget(time_limit_s=limit, seed=seed))
                wall = time.perf_counter() - t
                runs.append(
                    {
                        "seed": seed,
                        "edges": len(p.edges),
                        "proven": out.quality.proven_optimal,
                        "wall_s": wall,
                        "gap": out.quality.gap,
                        "objective": out.best.objective,
                    }
                )
            proven = [r["wall_s"] for r in runs if r["proven"]]
            rows.append(
                {
                    "family": family,
                    "n": n,
                    "proven": len(proven),
                    "runs": len(runs),
                    "median_s_proven": statistics.median(proven) if proven else None,
                    "max_s": max(r["wall_s"] for r in runs),
                    "max_gap": max(r["gap"] or 0.0 for r in runs),
                    "detail": runs,
                }
            )
            print_tto_row(rows[-1], limit)
    return rows


def fallback_quality(
    sizes: list[int], seeds: int, short: float, long: float
) -> list[dict[str, Any]]:
    solver = CpSatSolver()
    rows = []
    for family in FAMILIES:
        for n in sizes:
            runs = []
            for seed in range(seeds):
                p = instance(family, n, seed)
                t = time.perf_counter()
                heur = qubo_local_search(p.to_qubo().qubo, seed=seed)
                heur_s = time.perf_counter() - t
                heur_cut = p.evaluate(heur.solutions[0][0]).objective
                t = time.perf_counter()
                fast = solver.solve(p, Budget(time_limit_s=short, seed=seed))
                fast_s = time.perf_counter() - t
                ref = solver.solve(p, Budget(time_limit_s=long, seed=seed))
                ref_cut = ref.best.objective
                best_known = max(ref_cut, fast.best.objective, heur_cut)
                bound = ref.quality.bound
                runs.append(
                    {
                        "seed": seed,
                        "edges": len(p.edges),
                        "heuristic_cut": heur_cut,
                        "heuristic_s": heur_s,
                        "fallback_cut": fast.best.objective,
                        "fallback_s": fast_s,
                        "fallback_status": fast.provenance.settings["status"],
                        "ref_cut": ref_cut,
                        "ref_status": ref.provenance.settings["status"],
                        "ref_bound": bound,
                        "ratio_fallback_vs_ref": fast.best.objective / ref_cut,
                        "ratio_heuristic_vs_ref": heur_cut / ref_cut,
                        "ratio_fallback_vs_best_known": fast.best.objective / best_known,
                        "fallback_gap_to_ref_bound": (
                            max(0.0, (bound - fast.best.objective) / bound) if bound else None
                        ),
                    }
                )
            rows.append(summarize_quality(family, n, runs))
            print_quality_row(rows[-1])
    return rows


def summarize_quality(family: str, n: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    def col(key: str) -> list[float]:
        return [r[key] for r in runs if r[key] is not None]

    return {
        "family": family,
        "n": n,
        "runs": len(runs),
        "fallback_vs_ref_min": min(col("ratio_fallback_vs_ref")),
        "fallback_vs_ref_median": statistics.median(col("ratio_fallback_vs_ref")),
        "heuristic_vs_ref_median": statistics.median(col("ratio_heuristic_vs_ref")),
        "fallback_s_max": max(col("fallback_s")),
        "heuristic_s_median": statistics.median(col("heuristic_s")),
        "ref_gap_median": statistics.median(
            [
                max(0.0, (r["ref_bound"] - r["ref_cut"]) / r["ref_bound"])
                for r in runs
                if r["ref_bound"]
            ]
        ),
        "fallback_gap_median": statistics.median(col("fallback_gap_to_ref_bound")),
        "ref_proven": sum(r["ref_status"] == "OPTIMAL" for r in runs),
        "detail": runs,
    }


def print_tto_header(limit: float) -> None:
    print(f"\n== CP-SAT time to proven optimum (limit {limit:g} s per instance) ==")
    print(f"{'family':<10} {'n':>4} {'proven':>7} {'median s':>9} {'max s':>7} {'max gap':>8}")


def print_tto_row(r: dict[str, Any], limit: float) -> None:
    med = f"{r['median_s_proven']:.2f}" if r["median_s_proven"] is not None else "-"
    print(
        f"{r['family']:<10} {r['n']:>4} {r['proven']:>3}/{r['runs']:<3} {med:>9} "
        f"{r['max_s']:>7.2f} {r['max_gap']:>8.4f}",
        flush=True,
    )


def print_quality_header(short: float, long: float) -> None:
    print(f"\n== Fallback quality: {short:g} s budget vs CP-SAT {long:g} s (cut ratios) ==")
    print(
        f"{'family':<10} {'n':>4} {'fb/ref med':>10} {'fb/ref min':>10} {'heur/ref':>9} "
        f"{'fb gap':>7} {'ref gap':>8} {'ref opt':>7} {'fb max s':>8}"
    )


def print_quality_row(r: dict[str, Any]) -> None:
    print(
        f"{r['family']:<10} {r['n']:>4} {r['fallback_vs_ref_median']:>10.4f} "
        f"{r['fallback_vs_ref_min']:>10.4f} {r['heuristic_vs_ref_median']:>9.4f} "
        f"{r['fallback_gap_median']:>7.4f} {r['ref_gap_median']:>8.4f} "
        f"{r['ref_proven']:>3}/{r['runs']:<3} {r['fallback_s_max']:>8.2f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--seeds", type=int, default=None, help="instances per size")
    args = parser.parse_args()
    if args.quick:
        tto_sizes, tto_limit = [10, 20, 30], 5.0
        q_sizes, short, long = [50, 100], 1.0, 3.0
        seeds = args.seeds or 1
    else:
        tto_sizes, tto_limit = [10, 20, 30, 40, 50, 60], 60.0
        q_sizes, short, long = [50, 100, 150, 200], 1.0, 30.0
        seeds = args.seeds or 3
    settings = CpSatSettings()
    started = time.perf_counter()
    print(f"ortools {ORTOOLS_VERSION}, settings {settings}")
    print_tto_header(tto_limit)
    tto = time_to_optimal(tto_sizes, seeds, tto_limit)
    print_quality_header(short, long)
    quality = fallback_quality(q_sizes, seeds, short, long)
    report = {
        "benchmark": "bench_classical",
        "created_at": datetime.now(UTC).isoformat(),
        "quick": args.quick,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "ortools": ORTOOLS_VERSION,
        "settings": settings.__dict__,
        "seeds": seeds,
        "time_to_optimal": {"limit_s": tto_limit, "rows": tto},
        "fallback_quality": {"short_s": short, "long_s": long, "rows": quality},
        "elapsed_s": time.perf_counter() - started,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"bench_classical-{'quick-' if args.quick else ''}{stamp}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out} ({report['elapsed_s']:.0f} s)")


if __name__ == "__main__":
    main()
