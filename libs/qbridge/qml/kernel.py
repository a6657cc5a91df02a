"""Fidelity quantum kernel + SVC, against a classical RBF-SVC baseline on the same folds.

The quantum kernel of two samples is the fidelity of their encoded states,
``k(x, y) = |<phi(x)|phi(y)>|^2``, with ``phi`` a ZZ feature map (Havlicek et
al. 2019: Hadamards, ``P(2 x_i)`` phases and ``ZZ`` interactions
``2 (pi - x_i)(pi - x_j)``, repeated ``reps`` times). The statevectors of all
samples of a fold come from ONE Aer statevector call (a parameter sweep of one
transpiled circuit); the Gram matrices are then exact dense products in numpy.
That is affordable because a job is small (at most 8 features = 8 qubits, 200
samples) and avoids the ``O(n^2)`` fidelity circuits a hardware run would need.

Evaluation is stratified k-fold cross-validation with the job's seed. Inside
every fold, and only from the training part, the preprocessing is fitted
(optional dimension reduction, then standardization, then ``bandwidth``
scaling): no information from the test part leaks into the model. The quantum
model is ``SVC(kernel="precomputed")`` on the fidelity kernel; the baseline is
``SVC(kernel="rbf", gamma="scale")`` on the same preprocessed features and the
same folds, so the gap between the two is a like-for-like comparison.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from qiskit import QuantumCircuit, transpile
from qiskit.circuit.library import zz_feature_map
from qiskit_aer import AerSimulator
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from qbridge.errors import ConfigurationError

logger = logging.getLogger(__name__)

FloatMatrix = npt.NDArray[np.float64]
ComplexMatrix = npt.NDArray[np.complex128]
IntArray = npt.NDArray[np.int64]

ENTANGLEMENTS = ("linear", "full", "circular")
"""Accepted :attr:`KernelSettings.entanglement` values (pairs coupled by ``ZZ`` terms)."""

MAX_QUBITS = 16
"""Statevectors are dense (``2^n`` amplitudes per sample): a safety cap for the library."""


class Transformer(Protocol):
    """What a dimension reducer must provide (scikit-learn's transformer API)."""

    def fit_transform(self, x: Any, y: Any = None) -> Any:
        """Fit on ``x`` and return it transformed."""

    def transform(self, x: Any) -> Any:
        """Transform with what was fitted."""


@dataclass(frozen=True)
class KernelSettings:
    """Settings of the quantum-kernel classifier and its evaluation (recorded in provenance).

    Attributes:
        reps: Repetitions of the ZZ feature map.
        entanglement: ``linear``, ``circular`` or ``full`` ZZ couplings.
        bandwidth: Standardized features are multiplied by this before encoding;
            smaller values widen the kernel (large ones make it nearly diagonal).
        c: SVC regularization, for both models.
        folds: Cross-validation folds (at most the size of the smallest class).
    """

    reps: int = 2
    entanglement: str = "linear"
    bandwidth: float = 0.1
    c: float = 1.0
    folds: int = 5

    def __post_init__(self) -> None:
        if self.reps < 1:
            raise ConfigurationError(f"reps must be >= 1, got {self.reps}")
        if self.entanglement not in ENTANGLEMENTS:
            raise ConfigurationError(
                f"entanglement must be one of {ENTANGLEMENTS}, got {self.entanglement!r}"
            )
        if not self.bandwidth > 0 or not self.c > 0:
            raise ConfigurationError("bandwidth and c must be > 0")
        if self.folds < 2:
            raise ConfigurationError(f"folds must be >= 2, got {self.folds}")


@functools.cache
def _simulator() -> AerSimulator:
    # One thread: the machines this runs on are shared (see solvers.quantum.aer).
    return AerSimulator(method="statevector", max_parallel_threads=1)


@functools.cache
def _feature_map(num_features: int, reps: int, entanglement: str) -> QuantumCircuit:
    """The transpiled feature-map circuit with a final ``save_statevector``."""
    if not 1 <= num_features <= MAX_QUBITS:
        raise ConfigurationError(f"1..{MAX_QUBITS} features can be encoded, got {num_features}")
    logical = zz_feature_map(num_features, reps=reps, entanglement=entanglement)
    circuit = transpile(logical, _simulator(), optimization_level=1, seed_transpiler=0)
    circuit.save_statevector()
    return circuit


def feature_map(num_features: int, settings: KernelSettings | None = None) -> QuantumCircuit:
    """The parametrized ZZ feature map on ``num_features`` qubits (one parameter per feature).

    Raises:
        ConfigurationError: No features, or more than :data:`MAX_QUBITS`.
    """
    s = settings or KernelSettings()
    return _feature_map(num_features, s.reps, s.entanglement).copy()


def statevectors(x: FloatMatrix, settings: KernelSettings | None = None) -> ComplexMatrix:
    """Encoded states ``phi(x_i)`` of the rows of ``x``, from one Aer statevector run.

    Args:
        x: ``(n, d)`` already scaled features.
        settings: Feature-map settings.

    Returns:
        ``(n, 2^d)`` complex amplitudes, one normalized state per row.
    """
    s = settings or KernelSettings()
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    circuit = _feature_map(x.shape[1], s.reps, s.entanglement)
    # Parameters of zz_feature_map are x[0..d-1]; sort by vector index, not by name.
    params = sorted(circuit.parameters, key=lambda p: p.index)
    binds = [{p: x[:, i].tolist() for i, p in enumerate(params)}]
    result = _simulator().run(circuit, parameter_binds=binds).result()
    return np.array(
        [np.asarray(result.get_statevector(i)) for i in range(x.shape[0])], dtype=np.complex128
    )


def fidelity_kernel(a: ComplexMatrix, b: ComplexMatrix | None = None) -> FloatMatrix:
    """``K[i, j] = |<a_i|b_j>|^2`` for rows of statevectors (``b`` defaults to ``a``)."""
    b = a if b is None else b
    overlaps = a.conj() @ b.T
    return np.asarray(np.abs(overlaps) ** 2, dtype=np.float64)


def quantum_kernel(
    x: FloatMatrix, y: FloatMatrix | None = None, settings: KernelSettings | None = None
) -> FloatMatrix:
    """The fidelity kernel between the rows of ``x`` and ``y`` (default: ``x`` itself)."""
    sx = statevectors(x, settings)
    return fidelity_kernel(sx, None if y is None else statevectors(y, settings))


@dataclass(frozen=True)
class ModelScores:
    """Cross-validated scores of one model.

    Attributes:
        accuracy: Pooled out-of-fold accuracy (share of samples predicted right).
        fold_accuracies: Accuracy on each test fold.
        predictions: Out-of-fold prediction of every sample (in input order).
        seconds: Time spent fitting and predicting (quantum: including the kernel).
    """

    accuracy: float
    fold_accuracies: tuple[float, ...]
    predictions: tuple[int, ...]
    seconds: float

    @property
    def fold_mean(self) -> float:
        """Mean of the fold accuracies."""
        return float(np.mean(self.fold_accuracies))

    @property
    def fold_std(self) -> float:
        """Standard deviation of the fold accuracies."""
        return float(np.std(self.fold_accuracies))


@dataclass(frozen=True)
class ClassificationReport:
    """Quantum kernel vs classical baseline on the same folds.

    Attributes:
        baseline: RBF-SVC scores.
        quantum: Quantum-kernel SVC scores; None on the classical-only route.
        folds: Test indices of every fold (identical for both models).
        num_qubits: Qubits of the feature map (features after reduction).
        statevectors: Statevectors simulated (train + test rows, per fold).
    """

    baseline: ModelScores
    quantum: ModelScores | None
    folds: tuple[tuple[int, ...], ...]
    num_qubits: int
    statevectors: int

    @property
    def gap(self) -> float | None:
        """``quantum.accuracy - baseline.accuracy`` (None without a quantum model)."""
        return None if self.quantum is None else self.quantum.accuracy - self.baseline.accuracy


def stratified_folds(
    labels: Sequence[int] | IntArray, folds: int, seed: int
) -> list[tuple[IntArray, IntArray]]:
    """Train/test index pairs of a shuffled stratified k-fold split with ``seed``.

    Raises:
        ConfigurationError: Fewer than ``folds`` samples in some class.
    """
    y = np.asarray(labels)
    smallest = int(np.unique(y, return_counts=True)[1].min())
    if smallest < folds:
        raise ConfigurationError(
            f"{folds} folds need at least {folds} samples per class, the smallest class has "
            f"{smallest}"
        )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed % 2**32)
    return [
        (np.asarray(tr, dtype=np.int64), np.asarray(te, dtype=np.int64))
        for tr, te in splitter.split(np.zeros((len(y), 1)), y)
    ]


def _scores(
    y: IntArray, predictions: IntArray, splits: list[tuple[IntArray, IntArray]], seconds: float
) -> ModelScores:
    return ModelScores(
        accuracy=float(np.mean(predictions == y)),
        fold_accuracies=tuple(float(np.mean(predictions[te] == y[te])) for _, te in splits),
        predictions=tuple(int(v) for v in predictions),
        seconds=seconds,
    )


def cross_validate(
    features: Sequence[Sequence[float]] | FloatMatrix,
    labels: Sequence[int] | IntArray,
    *,
    seed: int,
    settings: KernelSettings | None = None,
    quantum: bool = True,
    reducer: Callable[[], Transformer] | None = None,
    deadline: float | None = None,
) -> ClassificationReport:
    """Cross-validate the baseline (and the quantum-kernel model) on identical folds.

    Args:
        features: ``(n, d)`` samples.
        labels: ``(n,)`` integer class labels.
        seed: Seeds the fold split (the only random choice: both SVCs are deterministic).
        settings: Kernel and evaluation settings.
        quantum: False runs the classical baseline alone (the classical route).
        reducer: Builds a fresh dimension reducer per fold (e.g. ``PCA(8)``), fitted
            on the training part only; None keeps the features as they are.
        deadline: ``time.perf_counter()`` value after which no further fold starts.

    Returns:
        Scores of both models with the folds used.

    Raises:
        ConfigurationError: Bad settings, too few samples per class for the folds,
            or too many features for a statevector.
        TimeoutError: ``deadline`` passed before every fold was evaluated.
    """
    s = settings or KernelSettings()
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ConfigurationError(
            f"features must be (n, d) and labels (n,), got {x.shape}, {y.shape}"
        )
    splits = stratified_folds(y, s.folds, seed)
    pred_b = np.zeros_like(y)
    pred_q = np.zeros_like(y)
    time_b = time_q = 0.0
    qubits = x.shape[1]
    simulated = 0
    for train, test in splits:
        if deadline is not None and time.perf_counter() > deadline:
            raise TimeoutError(f"time budget spent after {len(splits)} folds were planned")
        x_train, x_test = x[train], x[test]
        if reducer is not None:
            r = reducer()
            x_train, x_test = r.fit_transform(x_train, y[train]), r.transform(x_test)
        scaler = StandardScaler().fit(x_train)
        z_train = scaler.transform(x_train) * s.bandwidth
        z_test = scaler.transform(x_test) * s.bandwidth
        qubits = z_train.shape[1]

        t = time.perf_counter()
        rbf = SVC(kernel="rbf", gamma="scale", C=s.c).fit(z_train, y[train])
        pred_b[test] = rbf.predict(z_test)
        time_b += time.perf_counter() - t

        if quantum:
            t = time.perf_counter()
            states = statevectors(np.vstack([z_train, z_test]), s)
            simulated += states.shape[0]
            s_train, s_test = states[: len(train)], states[len(train) :]
            model = SVC(kernel="precomputed", C=s.c).fit(fidelity_kernel(s_train), y[train])
            pred_q[test] = model.predict(fidelity_kernel(s_test, s_train))
            time_q += time.perf_counter() - t

    report = ClassificationReport(
        baseline=_scores(y, pred_b, splits, time_b),
        quantum=_scores(y, pred_q, splits, time_q) if quantum else None,
        folds=tuple(tuple(int(i) for i in te) for _, te in splits),
        num_qubits=qubits,
        statevectors=simulated,
    )
    logger.debug(
        "cross-validated %d samples, %d folds: baseline %.3f, quantum %s",
        len(y),
        len(splits),
        report.baseline.accuracy,
        None if report.quantum is None else f"{report.quantum.accuracy:.3f}",
    )
    return report
