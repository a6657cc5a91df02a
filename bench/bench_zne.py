"""Benchmark of zero-noise extrapolation (ZNE) on the fake noisy backend.

Question: how much closer to the noiseless value is a QAOA expectation
estimated on ``fake_noisy`` (Aer with a fake IBM device's noise model) with ZNE
than without, and at what shot cost?

For each instance (weighted 3-regular MaxCut from ``qbridge.samples``, p = 1) the angles are those
QAOA finds on the exact statevector backend; the *reference* is the exact
(noiseless) expectation of the scaled Ising energy at those angles. At the same
angles, ``repeats`` independent estimates are taken on the noisy backend:

* ``raw``: unmitigated, ``shots`` shots;
* ``raw_equal_shots``: unmitigated with as many shots as ZNE spends in total
  (so that the error reduction is not just an effect of more shots);
* ``zne_<scales>_<method>``: ZNE with the given odd scale factors, ``shots``
  shots per scale factor.

Reported per method: absolute error ``|E - E_exact|`` (p50/p90/mean) and the
relative error ``|E - E_exact| / |E_exact|`` (mean), and the shot cost ratio
against ``raw`` (plus the depth-weighted ratio: a folded circuit runs
``lambda`` times the gates per shot).

Usage::

    .venv/bin/python bench/bench_zne.py            # full run (~4 min on 2 shared cores)
    .venv/bin/python bench/bench_zne.py --quick    # smoke run (~1 min)

Prints a table and writes JSON to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from qbridge.problems.base import Problem
from qbridge.samples import regular_maxcut
from qbridge.solvers.base import Budget
from qbridge.solvers.quantum import QaoaSettings, QaoaSolver, TranspileCache, make_backend
from qbridge.solvers.quantum.ansatz import IsingModel, build_qaoa_circuit, expand_angles
from qbridge.solvers.quantum.mitigation import ZeroNoiseExtrapolator, ZneSettings
from qbridge.solvers.quantum.qaoa import sdk_versions

RESULTS = Path(__file__).resolve().parent / "results"
DEVICE = "FakeGuadalupeV2"
CONFIGS = (ZneSettings((1, 3, 5), "richardson"), ZneSettings((1, 3), "richardson"))


def label(z: ZneSettings) -> str:
    return f"zne_{'-'.join(map(str, z.scale_factors))}_{z.extrapolation}"


def instance_errors(problem: Problem, shots: int, repeats: int, seed: int) -> dict[str, Any]:
    """Errors of every method on one instance (``repeats`` estimates each)."""
    optimal = QaoaSolver("aer_statevector", QaoaSettings(p=1), cache=TranspileCache()).solve(
        problem, Budget(seed=seed)
    )
    angles = np.array([optimal.provenance.settings["best_angles"]])
    model = IsingModel.from_qubo(problem.to_qubo().qubo)
    logical = build_qaoa_circuit(model.num_qubits, model.linear_support, model.quadratic_support, 1)
    values = expand_angles(model, angles, 1)
    observable = model.observable()
    exact_backend = make_backend("aer_statevector")
    exact = float(
        exact_backend.estimate(exact_backend.prepare(logical), observable, values, shots=0, seed=0)[
            0
        ]
    )
    noisy = make_backend("fake_noisy", device=DEVICE)
    prepared = noisy.prepare(logical)
    # The same parameter set repeated: one backend call gives `repeats` independent estimates.
    rows = np.repeat(values, repeats, axis=0)
    estimates: dict[str, np.ndarray] = {}
    timings: dict[str, float] = {}
    t = time.perf_counter()
    estimates["raw"] = noisy.estimate(prepared, observable, rows, shots=shots, seed=seed)
    timings["raw"] = time.perf_counter() - t
    most = max(z.shot_factor for z in CONFIGS)
    t = time.perf_counter()
    estimates["raw_equal_shots"] = noisy.estimate(
        prepared, observable, rows, shots=shots * most, seed=seed + 1
    )
    timings["raw_equal_shots"] = time.perf_counter() - t
    for z in CONFIGS:
        t = time.perf_counter()
        result = ZeroNoiseExtrapolator(noisy, prepared, z).estimate(
            observable, rows, shots=shots, seed=seed + 2
        )
        timings[label(z)] = time.perf_counter() - t
        estimates[label(z)] = result.values
    return {
        "num_qubits": problem.num_variables,
        "depth": prepared.depth,
        "exact": exact,
        "errors": {k: np.abs(v - exact).tolist() for k, v in estimates.items()},
        "relative_errors": {
            k: (np.abs(v - exact) / abs(exact)).tolist() for k, v in estimates.items()
        },
        "seconds": timings,
    }


def summarize(instances: list[dict[str, Any]], shots: int) -> list[dict[str, Any]]:
    most = max(z.shot_factor for z in CONFIGS)
    cost = {"raw": (1, 1), "raw_equal_shots": (most, most)}
    cost.update({label(z): (z.shot_factor, z.depth_weighted_factor) for z in CONFIGS})
    rows = []
    for method, (shot_ratio, weighted_ratio) in cost.items():
        errs = np.concatenate([inst["errors"][method] for inst in instances])
        rel = np.concatenate([inst["relative_errors"][method] for inst in instances])
        rows.append(
            {
                "method": method,
                "shots_per_estimate": shots * shot_ratio,
                "shot_cost_ratio": shot_ratio,
                "depth_weighted_cost_ratio": weighted_ratio,
                "abs_error_p50": float(np.percentile(errs, 50)),
                "abs_error_p90": float(np.percentile(errs, 90)),
                "abs_error_mean": float(errs.mean()),
                "rel_error_mean": float(rel.mean()),
                "seconds_total": float(sum(inst["seconds"][method] for inst in instances)),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    args = parser.parse_args()
    if args.quick:
        sizes, seeds, shots, repeats = [4], 2, 1000, 3
    else:
        sizes, seeds, shots, repeats = [4, 6], 4, 2000, 4
    started = time.perf_counter()
    instances = []
    for n in sizes:
        for s in range(seeds):
            graph = regular_maxcut(n, random.Random(f"zne-{n}-{s}"))
            inst = instance_errors(graph, shots, repeats, seed=100 + s)
            instances.append(inst)
            means = {k: f"{np.mean(v):.3f}" for k, v in inst["errors"].items()}
            print(f"n={n} seed={s} exact={inst['exact']:.3f} depth={inst['depth']} {means}")
    rows = summarize(instances, shots)
    print(
        f"\n{len(instances)} instances x {repeats} estimates on fake_noisy ({DEVICE}), p=1; "
        "errors in scaled Ising energy units (max |h, J| = 1)"
    )
    header = ("method", "shots", "ratio", "depth-w", "p50", "p90", "mean", "rel mean", "s")
    print("{:<28} {:>6} {:>5} {:>7} {:>7} {:>7} {:>7} {:>8} {:>6}".format(*header))
    for r in rows:
        print(
            f"{r['method']:<28} {r['shots_per_estimate']:>6} {r['shot_cost_ratio']:>5} "
            f"{r['depth_weighted_cost_ratio']:>7} {r['abs_error_p50']:>7.3f} "
            f"{r['abs_error_p90']:>7.3f} {r['abs_error_mean']:>7.3f} "
            f"{r['rel_error_mean']:>8.3f} {r['seconds_total']:>6.1f}"
        )
    report = {
        "benchmark": "bench_zne",
        "quick": args.quick,
        "when": datetime.now(UTC).isoformat(),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "sdk_versions": sdk_versions(),
        "device": DEVICE,
        "shots": shots,
        "repeats": repeats,
        "summary": rows,
        "instances": instances,
        "wall_s": time.perf_counter() - started,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"bench_zne-{'quick-' if args.quick else ''}{stamp}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out} ({report['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
