"""Benchmark of the quantum route (QAOA on Aer) on weighted 3-regular MaxCut.

Three questions:

1. Quality (``quality``): approximation ratios of QAOA against the exact optimum
   (CP-SAT, proven optimal), by depth p and size n: the *expected* ratio
   (expectation of the cut under the sampled distribution / optimum) and the
   *best-sampled* ratio (best cut among the samples / optimum).
2. Transpile cache (``cache``): time to prepare a circuit on a miss (build the
   ansatz + transpile with the already-built pass manager) vs a hit (lookup), on
   the statevector target and on a 16-qubit fake device (layout + routing).
   The one-time pass-manager construction is reported separately.
3. Batching (``batching``): K parameter sets evaluated in ONE backend call vs
   K calls of one set each.

Usage::

    .venv/bin/python bench/bench_quantum.py            # full run (~10 min on 2 cores)
    .venv/bin/python bench/bench_quantum.py --quick    # smoke run (~1 min)

Prints tables and writes JSON to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from qbridge.problems.maxcut import MaxCut
from qbridge.solvers.base import Budget
from qbridge.solvers.quantum import QaoaSettings, QaoaSolver, TranspileCache, make_backend
from qbridge.solvers.quantum.ansatz import IsingModel, build_qaoa_circuit, expand_angles
from qbridge.solvers.quantum.base import QuantumBackend
from qbridge.solvers.quantum.cache import StructureKey
from qbridge.solvers.quantum.qaoa import sdk_versions

RESULTS = Path(__file__).resolve().parent / "results"


def regular_graph(n: int, seed: int) -> MaxCut:
    """Random 3-regular graph (pairing model, retried until simple), weights 0.5..2."""
    rng = random.Random(f"3-regular-{n}-{seed}")
    while True:
        stubs = [v for v in range(n) for _ in range(3)]
        rng.shuffle(stubs)
        pairs = {tuple(sorted(stubs[i : i + 2])) for i in range(0, len(stubs), 2)}
        if len(pairs) == 3 * n // 2 and all(a != b for a, b in pairs):
            edges = [[a, b, round(rng.uniform(0.5, 2.0), 3)] for a, b in sorted(pairs)]
            return MaxCut.from_dict({"num_nodes": n, "edges": edges})


def exact_optimum(problem: MaxCut) -> tuple[float, str]:
    """The proven optimum: CP-SAT if available, else brute force."""
    try:
        from qbridge.solvers.classical import CpSatSolver
    except ImportError:
        CpSatSolver = None  # noqa: N806
    if CpSatSolver is not None:
        out = CpSatSolver().solve(problem, Budget(time_limit_s=60, seed=0))
        if out.quality.proven_optimal:
            return out.best.objective, "cp-sat"
    qubo = problem.to_qubo().qubo
    n = qubo.num_variables
    bits = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
    return float(-qubo.energies(bits.astype(np.int8)).min()), "brute-force"


def quality(sizes: list[int], depths: list[int], seeds: int) -> list[dict[str, Any]]:
    rows = []
    print("\n## Quality: QAOA on aer_statevector, weighted 3-regular MaxCut, 2048 shots")
    print(
        f"{'n':>3} {'p':>2} {'E[ratio] mean':>14} {'E[ratio] min':>13} "
        f"{'best ratio mean':>16} {'best ratio min':>15} {'optimal hits':>12} "
        f"{'iters':>6} {'wall s':>7}"
    )
    for n in sizes:
        instances = [regular_graph(n, s) for s in range(seeds)]
        optima = [exact_optimum(p) for p in instances]
        for p in depths:
            solver = QaoaSolver("aer_statevector", QaoaSettings(p=p), cache=TranspileCache())
            runs = []
            for seed, (problem, (opt, how)) in enumerate(zip(instances, optima, strict=True)):
                t = time.perf_counter()
                out = solver.solve(problem, Budget(time_limit_s=120, shots=2048, seed=seed))
                wall = time.perf_counter() - t
                assert out.quality.expected_objective is not None
                runs.append(
                    {
                        "seed": seed,
                        "optimum": opt,
                        "optimum_by": how,
                        "expected_ratio": out.quality.expected_objective / opt,
                        "best_ratio": out.best.objective / opt,
                        "confidence": out.quality.confidence,
                        "iterations": out.provenance.optimizer_iterations,
                        "stop": out.provenance.settings["stop_reason"],
                        "depth": out.provenance.circuit_depth,
                        "wall_s": wall,
                    }
                )
            row = {
                "n": n,
                "p": p,
                "runs": len(runs),
                "expected_ratio_mean": statistics.mean(r["expected_ratio"] for r in runs),
                "expected_ratio_min": min(r["expected_ratio"] for r in runs),
                "best_ratio_mean": statistics.mean(r["best_ratio"] for r in runs),
                "best_ratio_min": min(r["best_ratio"] for r in runs),
                "optimal_hits": sum(r["best_ratio"] >= 1 - 1e-9 for r in runs),
                "iterations_mean": statistics.mean(r["iterations"] for r in runs),
                "wall_s_mean": statistics.mean(r["wall_s"] for r in runs),
                "detail": runs,
            }
            rows.append(row)
            print(
                f"{n:>3} {p:>2} {row['expected_ratio_mean']:>14.3f} "
                f"{row['expected_ratio_min']:>13.3f} {row['best_ratio_mean']:>16.3f} "
                f"{row['best_ratio_min']:>15.3f} {row['optimal_hits']:>8}/{len(runs):<3} "
                f"{row['iterations_mean']:>6.1f} {row['wall_s_mean']:>7.2f}"
            )
    return rows


def _timed(fn: Callable[[], Any], reps: int) -> float:
    """Median wall time in ms."""
    samples = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1e3)
    return statistics.median(samples)


def cache_speedup(
    backends: list[tuple[str, dict[str, Any], list[int]]], reps: int
) -> list[dict[str, Any]]:
    rows = []
    print("\n## Transpile cache: prepare on miss vs hit (median ms), p=2")
    print(
        f"{'backend':<28} {'n':>3} {'pm build ms':>12} {'miss ms':>9} {'hit ms':>8} "
        f"{'speedup':>9} {'depth':>6}"
    )
    for name, options, sizes in backends:
        backend = make_backend(name, **options)
        t = time.perf_counter()
        backend._build_pass_manager()  # a fresh build: the one-time, per-process cost
        pm_ms = (time.perf_counter() - t) * 1e3
        backend.pass_manager()
        for n in sizes:
            model = IsingModel.from_qubo(regular_graph(n, 0).to_qubo().qubo)
            key = StructureKey(
                backend.target_key,
                backend.transpile_settings,
                n,
                2,
                model.linear_support,
                model.quadratic_support,
            )

            def build(model: IsingModel = model, backend: QuantumBackend = backend) -> Any:
                circuit = build_qaoa_circuit(
                    model.num_qubits, model.linear_support, model.quadratic_support, 2
                )
                return backend.prepare(circuit)

            def miss(key: StructureKey = key, build: Callable[[], Any] = build) -> None:
                TranspileCache().get_or_build(key, build)

            warm = TranspileCache()
            prepared, _ = warm.get_or_build(key, build)

            def hit(key: StructureKey = key, warm: TranspileCache = warm) -> None:
                warm.get_or_build(key, build)

            miss_ms = _timed(miss, reps)
            hit_ms = _timed(hit, reps * 20)
            row = {
                "backend": f"{name}{'/' + options['device'] if 'device' in options else ''}",
                "n": n,
                "pass_manager_build_ms": pm_ms,
                "miss_ms": miss_ms,
                "hit_ms": hit_ms,
                "speedup": miss_ms / hit_ms,
                "depth": prepared.depth,
            }
            rows.append(row)
            print(
                f"{row['backend']:<28} {n:>3} {pm_ms:>12.1f} {miss_ms:>9.2f} {hit_ms:>8.4f} "
                f"{row['speedup']:>8.0f}x {prepared.depth:>6}"
            )
            pm_ms = 0.0  # only the first size pays it
    return rows


def _one_by_one(call: Callable[[Any], Any], values: np.ndarray) -> None:
    for row in values:
        call(row[None, :])


def batching_speedup(
    backends: list[tuple[str, dict[str, Any], list[int]]], ks: list[int], reps: int
) -> list[dict[str, Any]]:
    rows = []
    print("\n## Batching: K parameter sets in one call vs K calls (median ms), p=2")
    print(f"{'backend':<28} {'n':>3} {'K':>4} {'batched ms':>11} {'K calls ms':>11} {'speedup':>8}")
    for name, options, sizes in backends:
        backend = make_backend(name, **options)
        shots = 0 if backend.exact_expectation else 256
        for n in sizes:
            model = IsingModel.from_qubo(regular_graph(n, 0).to_qubo().qubo)
            prepared = backend.prepare(
                build_qaoa_circuit(n, model.linear_support, model.quadratic_support, 2)
            )
            observable = model.observable()
            for k in ks:
                angles = np.random.default_rng(k).uniform(-1, 1, size=(k, 4))
                values = expand_angles(model, angles, 2)
                backend.estimate(prepared, observable, values[:1], shots=shots, seed=0)  # warm
                call = functools.partial(
                    backend.estimate, prepared, observable, shots=shots, seed=0
                )
                batched = _timed(functools.partial(call, values), reps)
                single = _timed(functools.partial(_one_by_one, call, values), reps)
                row = {
                    "backend": f"{name}{'/' + options['device'] if 'device' in options else ''}",
                    "n": n,
                    "k": k,
                    "shots_per_set": shots,
                    "batched_ms": batched,
                    "one_call_per_set_ms": single,
                    "speedup": single / batched,
                }
                rows.append(row)
                print(
                    f"{row['backend']:<28} {n:>3} {k:>4} {batched:>11.1f} {single:>11.1f} "
                    f"{row['speedup']:>7.1f}x"
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    args = parser.parse_args()
    noisy = {"device": "FakeGuadalupeV2"}
    if args.quick:
        sizes, depths, seeds, ks, reps = [8, 10, 12], [1, 2, 3], 3, [16], 3
        cache_runs = [("aer_statevector", {}, [12]), ("fake_noisy", noisy, [12])]
        batch_runs = [("aer_statevector", {}, [10, 12]), ("fake_noisy", noisy, [6])]
    else:
        sizes, depths, seeds, ks, reps = [8, 10, 12, 14, 16], [1, 2, 3], 5, [8, 32], 5
        cache_runs = [("aer_statevector", {}, [8, 12, 16]), ("fake_noisy", noisy, [8, 12])]
        batch_runs = [("aer_statevector", {}, [10, 14]), ("fake_noisy", noisy, [6, 8])]
    started = time.perf_counter()
    report: dict[str, Any] = {
        "benchmark": "bench_quantum",
        "quick": args.quick,
        "when": datetime.now(UTC).isoformat(),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "sdk_versions": sdk_versions(),
        "quality": quality(sizes, depths, seeds),
        "cache": cache_speedup(cache_runs, reps),
        "batching": batching_speedup(batch_runs, ks, reps),
    }
    report["wall_s"] = time.perf_counter() - started
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"bench_quantum-{'quick-' if args.quick else ''}{stamp}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out} ({report['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
