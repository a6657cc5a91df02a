"""Classification behind the common ``solve(problem, budget) -> Outcome`` contract.

* :class:`QuantumKernelSolver` (quantum route, ``quantum-kernel``): the
  fidelity-kernel SVC *and* the RBF baseline on the same folds, so that every
  quantum answer carries its own like-for-like classical comparison.
* :class:`KernelBaselineSolver` (classical route, ``rbf-svc``): the baseline alone.

Outcome mapping: the best candidate's assignment is the out-of-fold predicted
label of every sample and its objective the pooled cross-validated accuracy.
The quantum solver's best candidate is the quantum model's (that is what the
route is for, even when the baseline wins); the baseline's predictions follow as
the second candidate. Both accuracies, the gap (quantum - baseline), the fold
accuracies and the folds go to ``provenance.settings["classification"]``.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import asdict
from importlib import metadata

from qbridge.errors import BudgetExceededError, NotEligibleError
from qbridge.problems.base import Problem
from qbridge.problems.classification import Classification
from qbridge.qml.kernel import MAX_QUBITS, ClassificationReport, KernelSettings, cross_validate
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
)

logger = logging.getLogger(__name__)

KERNEL_BACKEND = "aer_statevector"
"""The only backend the quantum kernel runs on: exact statevectors (fidelities without shots)."""

STATEVECTOR_COST_UNITS = 1e-3
"""Cost units charged per simulated statevector, times ``2^qubits / 256``."""


def _versions() -> dict[str, str]:
    return dict(_sdk_versions())


@functools.cache
def _sdk_versions() -> dict[str, str]:
    out = {}
    for package in ("qiskit", "qiskit-aer", "scikit-learn", "numpy"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "absent"
    return out


def _check(problem: Problem) -> Classification:
    if not isinstance(problem, Classification):
        raise NotEligibleError(
            f"the kernel classifiers take classification problems, not {problem.kind!r}"
        )
    return problem


def classification_summary(report: ClassificationReport) -> dict[str, object]:
    """The provenance block of a cross-validation: accuracies, gap, folds."""
    q = report.quantum
    return {
        "baseline_accuracy": report.baseline.accuracy,
        "baseline_fold_accuracies": list(report.baseline.fold_accuracies),
        "quantum_accuracy": None if q is None else q.accuracy,
        "quantum_fold_accuracies": None if q is None else list(q.fold_accuracies),
        "accuracy_gap": report.gap,
        "folds": [list(f) for f in report.folds],
        "num_qubits": report.num_qubits,
        "statevectors": report.statevectors,
    }


class _KernelSolverBase(Solver):
    """Shared solve path; subclasses choose quantum or baseline-only."""

    quantum: bool
    backend: str
    problem_type = Classification.kind
    """The work items' ``problem_type`` these solvers take (executors dispatch on it)."""

    def __init__(self, settings: KernelSettings | None = None) -> None:
        self.settings = settings or KernelSettings()

    def _solve(self, problem: Problem, budget: Budget) -> Outcome:
        start = time.perf_counter()
        data = _check(problem)
        settings = KernelSettings(**{**asdict(self.settings), "folds": data.folds})
        try:
            report = cross_validate(
                data.features,
                data.labels,
                seed=budget.seed,
                settings=settings,
                quantum=self.quantum,
                deadline=start + budget.time_limit_s,
            )
        except TimeoutError as exc:
            raise BudgetExceededError(
                f"cross-validation did not fit the time budget of {budget.time_limit_s}s"
            ) from exc
        done = time.perf_counter()
        baseline = Candidate(report.baseline.predictions, report.baseline.accuracy, True)
        if report.quantum is not None:
            best = Candidate(report.quantum.predictions, report.quantum.accuracy, True)
            candidates: tuple[Candidate, ...] = (best, baseline)
            execute_s = report.quantum.seconds
        else:
            best, candidates, execute_s = baseline, (baseline,), report.baseline.seconds
        cost = (
            STATEVECTOR_COST_UNITS * report.statevectors * 2**report.num_qubits / 256
            if self.quantum
            else 0.0
        )
        provenance = Provenance(
            route=self.route,
            solver=self.name,
            backend=self.backend,
            backend_version=f"scikit-learn {_sdk_versions()['scikit-learn']}",
            sdk_versions=_versions(),
            settings={
                "kernel": asdict(settings) if self.quantum else None,
                "svc_c": settings.c,
                "baseline": "SVC(kernel='rbf', gamma='scale') on standardized features",
                "classification": classification_summary(report),
            },
            circuit_width=report.num_qubits if self.quantum else None,
            shots=0 if self.quantum else None,
            seed=budget.seed,
            timings=Timings(execute_s=execute_s, postprocess_s=done - start - execute_s),
            cost_units=cost,
        )
        logger.info(
            "%s on %d samples: baseline %.3f quantum %s (%.2fs)",
            self.name,
            len(data.labels),
            report.baseline.accuracy,
            "-" if report.quantum is None else f"{report.quantum.accuracy:.3f}",
            done - start,
        )
        return Outcome(
            best=best,
            candidates=candidates[: max(1, budget.top_n)],
            quality=Quality(),
            provenance=provenance,
        )


class QuantumKernelSolver(_KernelSolverBase):
    """Fidelity quantum-kernel SVC plus the RBF baseline on the same folds (quantum route).

    Args:
        settings: Feature map, bandwidth, SVC ``C`` (the problem's ``folds`` win).
        backend: The quantum backend the work item names; only ``aer_statevector``
            (exact fidelities) is supported.
    """

    name = "quantum-kernel"
    route = Route.QUANTUM
    quantum = True

    def __init__(
        self, settings: KernelSettings | None = None, backend: str = KERNEL_BACKEND
    ) -> None:
        super().__init__(settings)
        self.backend = backend

    def eligibility(self, problem: Problem) -> Eligibility:
        """Eligible for classification problems on the statevector backend."""
        if not isinstance(problem, Classification):
            return Eligibility(False, f"quantum-kernel takes classification, not {problem.kind}")
        qubits = problem.num_features
        if self.backend != KERNEL_BACKEND:
            return Eligibility(
                False, f"the quantum kernel runs on {KERNEL_BACKEND}, not {self.backend}", qubits
            )
        if qubits > MAX_QUBITS:
            return Eligibility(False, f"{qubits} features exceed {MAX_QUBITS} qubits", qubits)
        return Eligibility(True, qubits=qubits)

    def solve(self, problem: Problem, budget: Budget) -> Outcome:
        """Cross-validate both models on the problem's data with ``budget.seed``.

        Raises:
            NotEligibleError: Not a classification problem, or another backend.
            BudgetExceededError: The folds did not fit ``budget.time_limit_s``.
        """
        eligible = self.eligibility(problem)
        if not eligible.eligible:
            raise NotEligibleError(eligible.reason)
        return self._solve(problem, budget)


class KernelBaselineSolver(_KernelSolverBase):
    """The classical RBF-SVC baseline alone (classical route).

    Args:
        settings: Only ``c`` is used (the problem's ``folds`` win).
    """

    name = "rbf-svc"
    route = Route.CLASSICAL
    quantum = False
    backend = "scikit-learn"

    def eligibility(self, problem: Problem) -> Eligibility:
        """Eligible for every classification problem."""
        if not isinstance(problem, Classification):
            return Eligibility(False, f"rbf-svc takes classification, not {problem.kind}")
        return Eligibility(True)

    def solve(self, problem: Problem, budget: Budget) -> Outcome:
        """Cross-validate the baseline with ``budget.seed``.

        Raises:
            NotEligibleError: Not a classification problem.
            BudgetExceededError: The folds did not fit ``budget.time_limit_s``.
        """
        return self._solve(problem, budget)
