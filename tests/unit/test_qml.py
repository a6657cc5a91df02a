"""Fidelity quantum kernel and its cross-validation against the RBF baseline."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit.quantum_info import Statevector
from sklearn.datasets import load_iris
from sklearn.decomposition import PCA

from qbridge.errors import ConfigurationError
from qbridge.qml import (
    KernelSettings,
    cross_validate,
    feature_map,
    fidelity_kernel,
    quantum_kernel,
    statevectors,
    stratified_folds,
)


def iris_two_classes() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_iris(return_X_y=True)
    keep = y > 0  # versicolor vs virginica: the two classes that overlap
    return x[keep], y[keep]


def random_features(n: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d))


# -- kernel -------------------------------------------------------------------------


def test_statevectors_match_qiskit_statevector_of_the_feature_map() -> None:
    x = random_features(4, 3, seed=1)
    states = statevectors(x)
    circuit = feature_map(3)
    params = sorted(circuit.parameters, key=lambda p: p.index)  # type: ignore[attr-defined]
    circuit.remove_final_measurements()
    logical = circuit.copy_empty_like()
    for inst in circuit.data:
        if inst.operation.name != "save_statevector":
            logical.append(inst)
    for row, state in zip(x, states, strict=True):
        expected = Statevector(logical.assign_parameters(dict(zip(params, row, strict=True))))
        assert abs(np.vdot(expected.data, state)) == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(np.linalg.norm(states, axis=1), 1.0, atol=1e-12)


def test_kernel_is_symmetric_psd_with_unit_diagonal() -> None:
    k = quantum_kernel(random_features(30, 4, seed=2))
    np.testing.assert_allclose(k, k.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(k), 1.0, atol=1e-12)
    assert np.linalg.eigvalsh(k).min() > -1e-9
    assert (k >= 0).all() and (k <= 1 + 1e-12).all()


def test_cross_kernel_agrees_with_the_gram_matrix_blocks() -> None:
    x = random_features(10, 3, seed=3)
    full = quantum_kernel(x)
    np.testing.assert_allclose(quantum_kernel(x[:4], x[4:]), full[:4, 4:], atol=1e-12)
    states = statevectors(x)
    np.testing.assert_allclose(fidelity_kernel(states[:4], states[4:]), full[:4, 4:], atol=1e-12)


def test_bandwidth_controls_how_diagonal_the_kernel_is() -> None:
    x = random_features(20, 4, seed=4)
    off = ~np.eye(20, dtype=bool)
    means = [quantum_kernel(x * b)[off].mean() for b in (0.01, 0.05, 0.1, 0.5)]
    assert means == sorted(means, reverse=True)
    assert means[0] > 0.9 and means[-1] < 0.2


def test_too_many_features_are_rejected() -> None:
    with pytest.raises(ConfigurationError, match="features"):
        statevectors(np.zeros((2, 17)))


@pytest.mark.parametrize(
    "kwargs",
    [{"reps": 0}, {"entanglement": "star"}, {"bandwidth": 0.0}, {"c": -1.0}, {"folds": 1}],
)
def test_bad_kernel_settings_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        KernelSettings(**kwargs)  # type: ignore[arg-type]


# -- cross-validation -------------------------------------------------------------------


def test_folds_are_stratified_disjoint_and_cover_every_sample() -> None:
    _, y = iris_two_classes()
    splits = stratified_folds(y, 5, seed=9)
    tests = np.concatenate([te for _, te in splits])
    assert sorted(tests.tolist()) == list(range(len(y)))
    for train, test in splits:
        assert not set(train) & set(test)
        assert np.bincount(y[test])[1:].tolist() == [10, 10]
    with pytest.raises(ConfigurationError, match="per class"):
        stratified_folds([0, 0, 0, 1, 1], 3, seed=0)


def test_both_models_use_the_same_folds_and_report_the_gap() -> None:
    x, y = iris_two_classes()
    report = cross_validate(x, y, seed=5)
    assert report.quantum is not None
    expected = tuple(tuple(int(i) for i in te) for _, te in stratified_folds(y, 5, seed=5))
    assert report.folds == expected
    for scores in (report.quantum, report.baseline):
        preds = np.array(scores.predictions)
        assert scores.accuracy == pytest.approx(np.mean(preds == y))
        assert scores.fold_accuracies == tuple(
            pytest.approx(np.mean(preds[list(f)] == y[list(f)])) for f in report.folds
        )
        assert set(scores.predictions) <= {1, 2}
    assert report.gap == pytest.approx(report.quantum.accuracy - report.baseline.accuracy)
    # Versicolor vs virginica is learnable but not trivially: both models well above chance.
    assert report.quantum.accuracy > 0.85 and report.baseline.accuracy > 0.85
    assert report.num_qubits == 4
    assert report.statevectors == 5 * len(y)  # every fold: its train and test rows


def test_same_seed_same_report_other_seed_other_folds() -> None:
    x, y = iris_two_classes()
    a = cross_validate(x, y, seed=11)
    b = cross_validate(x, y, seed=11)
    c = cross_validate(x, y, seed=12)
    assert a.quantum is not None and b.quantum is not None
    assert a.folds == b.folds
    assert a.quantum.predictions == b.quantum.predictions
    assert a.quantum.fold_accuracies == b.quantum.fold_accuracies
    assert a.baseline.predictions == b.baseline.predictions
    assert a.folds != c.folds


def test_classical_route_runs_the_baseline_alone() -> None:
    x, y = iris_two_classes()
    full = cross_validate(x, y, seed=5)
    classical = cross_validate(x, y, seed=5, quantum=False)
    assert classical.quantum is None and classical.gap is None
    assert classical.statevectors == 0
    assert classical.baseline.predictions == full.baseline.predictions


def test_reducer_is_fitted_inside_each_fold() -> None:
    x, y = iris_two_classes()
    fitted_sizes: list[int] = []

    class Recording(PCA):  # type: ignore[misc]
        def fit_transform(self, x: np.ndarray, y: object = None) -> np.ndarray:
            fitted_sizes.append(len(x))
            return super().fit_transform(x, y)  # type: ignore[no-any-return]

    report = cross_validate(x, y, seed=5, reducer=lambda: Recording(n_components=2))
    assert fitted_sizes == [80] * 5  # the training part only, never the test rows
    assert report.num_qubits == 2


def test_deadline_stops_before_the_next_fold() -> None:
    x, y = iris_two_classes()
    with pytest.raises(TimeoutError):
        cross_validate(x, y, seed=0, deadline=0.0)
