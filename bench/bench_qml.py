"""Benchmark of quantum-kernel classification against the classical RBF-SVC baseline.

Datasets (public domain, shipped inside scikit-learn: nothing is downloaded):

* ``iris-2``: iris, versicolor vs virginica (the two overlapping classes),
  100 samples, 4 features (4 qubits);
* ``breast_cancer-200``: Wisconsin diagnostic breast cancer, a stratified
  subsample of 200 of the 569 samples, 30 features reduced to 8 by PCA (8 qubits);
* ``wine``: 178 samples, 3 classes, 13 features reduced to 8 by PCA.

PCA and standardization are fitted inside each fold on its training part only
(no leakage). Both models see the same folds (stratified 5-fold, one split per
seed). Reported per dataset: mean +- std of the fold accuracies over all folds
and seeds, the pooled accuracy gap (quantum - baseline), and the time spent per
model (quantum includes the statevector simulation and Gram matrices).

Usage::

    .venv/bin/python bench/bench_qml.py            # 5 seeds (~2 min on 2 cores)
    .venv/bin/python bench/bench_qml.py --quick    # 1 seed

Prints a table and writes JSON to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer, load_iris, load_wine
from sklearn.decomposition import PCA
from sklearn.model_selection import train_test_split

from qbridge.qml import KernelSettings, cross_validate
from qbridge.qml.kernel import Transformer

RESULTS = Path(__file__).resolve().parent / "results"
MAX_FEATURES = 8


def datasets() -> dict[str, tuple[np.ndarray, np.ndarray, Callable[[], Transformer] | None]]:
    x, y = load_iris(return_X_y=True)
    keep = y > 0
    iris = (x[keep], y[keep], None)
    xb, yb = load_breast_cancer(return_X_y=True)
    xb, _, yb, _ = train_test_split(xb, yb, train_size=200, stratify=yb, random_state=0)
    xw, yw = load_wine(return_X_y=True)
    return {
        "iris-2": iris,
        "breast_cancer-200": (xb, yb, lambda: PCA(n_components=MAX_FEATURES)),
        "wine": (xw, yw, lambda: PCA(n_components=MAX_FEATURES)),
    }


def run(seeds: int, settings: KernelSettings) -> list[dict[str, Any]]:
    rows = []
    for name, (x, y, reducer) in datasets().items():
        q_folds: list[float] = []
        b_folds: list[float] = []
        gaps: list[float] = []
        q_time = b_time = 0.0
        qubits = 0
        for seed in range(seeds):
            report = cross_validate(x, y, seed=seed, settings=settings, reducer=reducer)
            assert report.quantum is not None and report.gap is not None
            q_folds += report.quantum.fold_accuracies
            b_folds += report.baseline.fold_accuracies
            gaps.append(report.gap)
            q_time += report.quantum.seconds
            b_time += report.baseline.seconds
            qubits = report.num_qubits
        rows.append(
            {
                "dataset": name,
                "samples": len(y),
                "classes": len(set(y.tolist())),
                "qubits": qubits,
                "folds_evaluated": len(q_folds),
                "quantum_mean": float(np.mean(q_folds)),
                "quantum_std": float(np.std(q_folds)),
                "baseline_mean": float(np.mean(b_folds)),
                "baseline_std": float(np.std(b_folds)),
                "gap_mean": float(np.mean(gaps)),
                "quantum_s_per_cv": q_time / seeds,
                "baseline_s_per_cv": b_time / seeds,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed")
    args = parser.parse_args()
    seeds = 1 if args.quick else 5
    settings = KernelSettings()
    started = time.perf_counter()
    rows = run(seeds, settings)
    print(
        f"\n{settings.folds}-fold stratified CV x {seeds} seeds; ZZ feature map reps="
        f"{settings.reps} {settings.entanglement}, bandwidth={settings.bandwidth}, C={settings.c}"
    )
    header = ("dataset", "n", "cls", "qub", "quantum", "rbf baseline", "gap", "q s/cv", "b s/cv")
    print("{:<18} {:>4} {:>3} {:>3} {:>15} {:>15} {:>7} {:>7} {:>7}".format(*header))
    for r in rows:
        print(
            f"{r['dataset']:<18} {r['samples']:>4} {r['classes']:>3} {r['qubits']:>3} "
            f"{r['quantum_mean']:>7.3f} +- {r['quantum_std']:.3f} "
            f"{r['baseline_mean']:>7.3f} +- {r['baseline_std']:.3f} {r['gap_mean']:>+7.3f} "
            f"{r['quantum_s_per_cv']:>7.2f} {r['baseline_s_per_cv']:>7.3f}"
        )
    report = {
        "benchmark": "bench_qml",
        "quick": args.quick,
        "when": datetime.now(UTC).isoformat(),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "versions": {p: metadata.version(p) for p in ("qiskit", "qiskit-aer", "scikit-learn")},
        "settings": vars(settings),
        "seeds": seeds,
        "results": rows,
        "wall_s": time.perf_counter() - started,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"bench_qml-{'quick-' if args.quick else ''}{stamp}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out} ({report['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
