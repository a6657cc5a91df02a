"""The ``classification`` problem type and its two solvers (quantum kernel, RBF baseline)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_iris

from qbridge.contracts.convert import outcome_fields
from qbridge.errors import (
    BudgetExceededError,
    InvalidProblemError,
    NotEligibleError,
    ProblemTooLargeError,
)
from qbridge.problems import PROBLEM_TYPES, Classification, MaxCut, problem_from_dict
from qbridge.problems.limits import Limits, check_limits
from qbridge.qml import cross_validate
from qbridge.qml.solvers import KernelBaselineSolver, QuantumKernelSolver
from qbridge.solvers.base import Budget, Route
from qbridge.solvers.quantum import QaoaSolver


def iris_payload(n_per_class: int = 50) -> dict[str, Any]:
    x, y = load_iris(return_X_y=True)
    keep = np.concatenate([np.flatnonzero(y == c)[:n_per_class] for c in (1, 2)])
    return {"features": x[keep].round(2).tolist(), "labels": y[keep].tolist(), "folds": 5}


SMALL = {
    "features": [[0.0, 1.0], [0.1, 0.9], [0.2, 1.1], [1.0, 0.0], [0.9, 0.1], [1.1, -0.1]],
    "labels": [0, 0, 0, 1, 1, 1],
    "folds": 3,
}


# -- problem type ---------------------------------------------------------------------


def test_classification_is_registered_and_round_trips() -> None:
    assert PROBLEM_TYPES["classification"] is Classification
    p = problem_from_dict("classification", SMALL)
    assert isinstance(p, Classification)
    assert p.num_variables == 6 and p.num_features == 2 and p.num_qubits() == 2
    assert p.classes == (0, 1)
    data = json.loads(p.canonical_json())
    assert data.pop("kind") == "classification"
    again = problem_from_dict("classification", data)
    assert again == p and again.fingerprint() == p.fingerprint()


def test_default_folds_and_normalization() -> None:
    p = Classification.from_dict(
        {"features": [[1, -0.0]] * 5 + [[2, 3]] * 5, "labels": [4] * 5 + [7] * 5}
    )
    assert p.folds == 5
    assert p.features[0] == (1.0, 0.0) and isinstance(p.features[0][0], float)
    assert p.to_dict()["labels"] == [4] * 5 + [7] * 5


@pytest.mark.parametrize(
    ("change", "field", "error"),
    [
        (
            {"features": [[0.0]] * 201, "labels": [0, 1] * 100 + [0]},
            "features",
            ProblemTooLargeError,
        ),
        ({"features": [[0.0] * 9] * 6}, "features[0]", ProblemTooLargeError),
        ({"features": []}, "features", InvalidProblemError),
        ({"features": [[]] * 6}, "features[0]", InvalidProblemError),
        ({"features": [[0.0, 1.0]] * 5 + [[0.0]]}, "features[5]", InvalidProblemError),
        ({"features": [[0.0, float("nan")]] * 6}, "features[0][1]", InvalidProblemError),
        ({"features": [[0.0, "x"]] * 6}, "features[0][1]", InvalidProblemError),
        ({"labels": [0, 0, 0, 1, 1]}, "labels", InvalidProblemError),
        ({"labels": [0, 0, 0, 1, 1, 1.5]}, "labels[5]", InvalidProblemError),
        ({"labels": [0] * 6}, "labels", InvalidProblemError),
        ({"labels": [0, 0, 0, 0, 1, 1]}, "labels", InvalidProblemError),  # class 1 < 3 folds
        ({"folds": 1}, "folds", InvalidProblemError),
        ({"folds": 11}, "folds", InvalidProblemError),
        ({"folds": None}, "folds", InvalidProblemError),
        ({"extra": 1}, "extra", InvalidProblemError),
    ],
)
def test_invalid_payloads_are_rejected_with_the_field(
    change: dict[str, Any], field: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        Classification.from_dict({**SMALL, **change})
    assert info.value.field == field  # type: ignore[attr-defined]


def test_evaluate_scores_predicted_labels_as_accuracy() -> None:
    p = Classification.from_dict(SMALL)
    assert p.evaluate([0, 0, 0, 1, 1, 1]).objective == 1.0
    ev = p.evaluate([0, 1, 0, 1, 1, 0])
    assert ev.objective == pytest.approx(4 / 6) and ev.feasible
    with pytest.raises(InvalidProblemError, match="expected 6"):
        p.evaluate([0, 1])
    with pytest.raises(InvalidProblemError) as info:
        p.evaluate([0, 0, 0, 1, 1, 2])
    assert info.value.field == "assignment[5]"


def test_no_qubo_but_within_the_intake_limits() -> None:
    p = Classification.from_dict(SMALL)
    with pytest.raises(NotEligibleError, match="quantum-kernel"):
        p.to_qubo()
    check_limits(p, Limits())  # counts one qubit per feature, never builds a QUBO
    with pytest.raises(ProblemTooLargeError):
        check_limits(p, Limits(max_qubits=1))


# -- solvers -------------------------------------------------------------------------------


def test_quantum_kernel_solver_reports_both_accuracies_and_the_gap() -> None:
    p = Classification.from_dict(iris_payload())
    outcome = QuantumKernelSolver().solve(p, Budget(seed=4, time_limit_s=60))
    report = cross_validate(p.features, p.labels, seed=4)
    assert report.quantum is not None
    info = outcome.provenance.settings["classification"]
    assert info["quantum_accuracy"] == report.quantum.accuracy
    assert info["baseline_accuracy"] == report.baseline.accuracy
    assert info["accuracy_gap"] == pytest.approx(report.quantum.accuracy - report.baseline.accuracy)
    assert info["folds"] == [list(f) for f in report.folds]
    # Best = the quantum model's out-of-fold predictions, re-checkable on the problem.
    assert outcome.best.assignment == report.quantum.predictions
    assert outcome.best.objective == p.evaluate(outcome.best.assignment).objective
    assert outcome.candidates[1].assignment == report.baseline.predictions
    prov = outcome.provenance
    assert prov.route is Route.QUANTUM and prov.solver == "quantum-kernel"
    assert prov.backend == "aer_statevector" and prov.circuit_width == 4
    assert prov.cost_units > 0 and prov.seed == 4
    # The whole outcome converts to the Avro records (settings as JSON).
    fields = outcome_fields(outcome)
    assert json.loads(fields["provenance"]["settings_json"])["classification"]["accuracy_gap"] == (
        pytest.approx(info["accuracy_gap"])
    )


def test_baseline_solver_is_the_classical_route_with_the_same_folds() -> None:
    p = Classification.from_dict(iris_payload())
    quantum = QuantumKernelSolver().solve(p, Budget(seed=4))
    classical = KernelBaselineSolver().solve(p, Budget(seed=4))
    assert classical.provenance.route is Route.CLASSICAL
    assert classical.best == quantum.candidates[1]
    info = classical.provenance.settings["classification"]
    assert info["quantum_accuracy"] is None and info["accuracy_gap"] is None
    assert info["folds"] == quantum.provenance.settings["classification"]["folds"]
    assert classical.provenance.cost_units == 0.0


def test_eligibility_by_type_and_backend() -> None:
    p = Classification.from_dict(SMALL)
    other = MaxCut(2, ((0, 1, 1.0),))
    assert QuantumKernelSolver().eligibility(p).eligible
    assert QuantumKernelSolver().eligibility(p).qubits == 2
    assert not QuantumKernelSolver().eligibility(other).eligible
    noisy = QuantumKernelSolver(backend="fake_noisy")
    assert not noisy.eligibility(p).eligible
    with pytest.raises(NotEligibleError, match="aer_statevector"):
        noisy.solve(p, Budget())
    assert KernelBaselineSolver().eligibility(p).eligible
    assert not KernelBaselineSolver().eligibility(other).eligible
    with pytest.raises(NotEligibleError):
        KernelBaselineSolver().solve(other, Budget())
    # QAOA cannot take it: there is no QUBO.
    with pytest.raises(NotEligibleError):
        QaoaSolver("aer_statevector").solve(p, Budget())


def test_time_budget_too_small_is_over_budget() -> None:
    p = Classification.from_dict(iris_payload())
    with pytest.raises(BudgetExceededError):
        QuantumKernelSolver().solve(p, Budget(time_limit_s=0.0))
