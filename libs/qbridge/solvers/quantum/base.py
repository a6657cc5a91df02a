"""One interface over every quantum execution target.

A :class:`QuantumBackend` does three things for the QAOA loop:

* :meth:`QuantumBackend.prepare` transpiles a parametrized logical circuit for
  its target (once per circuit *structure*, see :mod:`.cache`) and adds the
  measurements, giving a :class:`PreparedCircuit`;
* :meth:`QuantumBackend.estimate` returns expectation values of a diagonal
  (Z-only) observable for a *batch* of parameter sets in one backend call:
  exact on the Aer statevector / MPS simulators, sampled on shot-based ones;
* :meth:`QuantumBackend.sample` measures a batch of parameter sets.

Adapters live in :mod:`.aer` (``aer_statevector``, ``aer_mps``, ``fake_noisy``)
and :mod:`.runtime` (``runtime_local``, ``ibm_runtime``); failures can be
injected with :mod:`.faults`. Build one by name with
:func:`qbridge.solvers.quantum.backends.make_backend`: this module is the base the
adapters import, the factory sits above them, so imports point one way.

Pass managers are expensive to build (~100 ms) and are therefore built once per
process and per (target, optimization level, seed) in a module-level cache.
"""

from __future__ import annotations

import abc
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from qiskit import ClassicalRegister, QuantumCircuit
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler import PassManager

from qbridge.errors import ConfigurationError

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
BitMatrix = npt.NDArray[np.uint8]

MEASURE_REGISTER = "meas"
"""Name of the classical register holding logical qubit ``i`` in bit ``i``."""

T = TypeVar("T")

_PROCESS_CACHE: dict[tuple[Any, ...], Any] = {}
_PROCESS_CACHE_LOCK = threading.RLock()  # factories may nest (pass manager -> simulator)


def process_cached(key: tuple[Any, ...], factory: Callable[[], T]) -> T:
    """Return the process-wide object for ``key``, building it at most once.

    Used for simulators, fake devices and pass managers, whose construction
    dominates the cost of a small solve. The factory runs under the lock so that
    concurrent first calls do not build the object twice.
    """
    with _PROCESS_CACHE_LOCK:
        if key not in _PROCESS_CACHE:
            logger.debug("building process-wide %s", key)
            _PROCESS_CACHE[key] = factory()
        return _PROCESS_CACHE[key]


@dataclass(frozen=True)
class TranspileSettings:
    """Transpiler settings; part of the transpile-cache key and of provenance.

    Attributes:
        optimization_level: Qiskit preset pass-manager level (0-3).
        seed_transpiler: Seed for the stochastic layout/routing passes. Fixed per
            backend (not per job) so that structure-equal jobs share a circuit.
    """

    optimization_level: int = 1
    seed_transpiler: int = 7

    def __post_init__(self) -> None:
        if self.optimization_level not in (0, 1, 2, 3):
            raise ConfigurationError(
                f"optimization_level must be 0..3, got {self.optimization_level}"
            )

    def as_dict(self) -> dict[str, int]:
        """Plain-dict form for provenance."""
        return {
            "optimization_level": self.optimization_level,
            "seed_transpiler": self.seed_transpiler,
        }


@dataclass(frozen=True)
class PreparedCircuit:
    """A circuit transpiled for one backend, ready for parameter binding.

    Attributes:
        circuit: The target (ISA) circuit without measurements, for estimators.
        measured: ``circuit`` plus measurement of logical qubit ``i`` into bit ``i``
            of the ``meas`` register (wherever routing left that qubit).
        num_logical_qubits: Qubits of the logical circuit.
        columns: For each parameter of ``circuit`` (in its sorted order), the
            column of the logical parameter matrix that feeds it.
        depth: Depth of ``measured``.
        width: Physical qubits actually touched by ``measured``.
    """

    circuit: QuantumCircuit
    measured: QuantumCircuit
    num_logical_qubits: int
    columns: tuple[int, ...]
    depth: int
    width: int

    def bind_matrix(self, values: FloatArray) -> FloatArray:
        """Reorder a ``(k, m)`` logical parameter matrix into this circuit's order."""
        return np.ascontiguousarray(np.atleast_2d(values)[:, list(self.columns)])

    def map_observable(self, observable: SparsePauliOp) -> SparsePauliOp:
        """Move a logical observable onto the physical qubits chosen by the layout."""
        if self.circuit.layout is None:
            return observable
        return observable.apply_layout(self.circuit.layout)


@dataclass
class BackendStats:
    """Call counters of one backend instance (for tests, benchmarks and metrics).

    Attributes:
        estimate_calls: Backend calls made by :meth:`QuantumBackend.estimate`.
        sample_calls: Backend calls made by :meth:`QuantumBackend.sample`.
        parameter_sets: Parameter sets evaluated over all calls.
        shots: Shots consumed over all calls (0 for exact estimation).
    """

    estimate_calls: int = 0
    sample_calls: int = 0
    parameter_sets: int = 0
    shots: int = 0


class QuantumBackend(abc.ABC):
    """Base class of every backend adapter.

    Subclasses implement :meth:`_build_pass_manager`, :meth:`_sample` and, when
    they can do better than sampling, :meth:`_estimate`. Instances are cheap and
    thread-safe; heavy objects are shared through :func:`process_cached`.

    Attributes:
        name: Backend name as used in routing and provenance (``aer_statevector``...).
        exact_expectation: :meth:`estimate` is exact and consumes no shots.
        statevector_cost: A call's time grows as ``2^width x gates`` per parameter
            row (a dense statevector): the QAOA solver may then predict a large
            circuit's evaluation time from smaller ones (see :class:`EvaluationCost`).
    """

    name: str
    exact_expectation: bool = False
    statevector_cost: bool = False

    def __init__(
        self, *, max_qubits: int, transpile_settings: TranspileSettings | None = None
    ) -> None:
        if max_qubits < 1:
            raise ConfigurationError(f"max_qubits must be >= 1, got {max_qubits}")
        self._max_qubits = max_qubits
        self._transpile = transpile_settings or TranspileSettings()
        self._stats = BackendStats()
        self._stats_lock = threading.Lock()

    @property
    def max_qubits(self) -> int:
        """Largest logical circuit this backend accepts."""
        return self._max_qubits

    @property
    def transpile_settings(self) -> TranspileSettings:
        """Transpiler settings used by :meth:`prepare`."""
        return self._transpile

    @property
    @abc.abstractmethod
    def version(self) -> str:
        """Version string of the execution target (simulator or device)."""

    @property
    @abc.abstractmethod
    def target_key(self) -> str:
        """Identifies the transpile target; equal keys mean interchangeable circuits."""

    @property
    def options(self) -> dict[str, Any]:
        """Backend options that influence results (recorded in provenance)."""
        return {}

    def stats(self) -> BackendStats:
        """A snapshot of the call counters."""
        with self._stats_lock:
            return BackendStats(**vars(self._stats))

    # -- transpilation -------------------------------------------------------

    @abc.abstractmethod
    def _build_pass_manager(self) -> PassManager:
        """Build the pass manager for this target (called once per process)."""

    def pass_manager(self) -> tuple[PassManager, threading.Lock]:
        """The process-wide pass manager of this target and settings, with its lock.

        Pass instances keep per-run state on ``self``, so one pass manager must
        not run two circuits at once: callers hold the returned lock while running.
        """
        key = ("pass_manager", self.target_key, *self._transpile.as_dict().values())
        return process_cached(key, lambda: (self._build_pass_manager(), threading.Lock()))

    def prepare(self, logical: QuantumCircuit) -> PreparedCircuit:
        """Transpile ``logical`` (no measurements) for this target and add measurements.

        Raises:
            ConfigurationError: The circuit exceeds :attr:`max_qubits`.
        """
        if logical.num_qubits > self.max_qubits:
            raise ConfigurationError(
                f"{logical.num_qubits} qubits exceed {self.name}'s limit of {self.max_qubits}"
            )
        pm, lock = self.pass_manager()
        with lock:
            isa = pm.run(logical)
        measured = _with_logical_measurements(isa, logical.num_qubits)
        index = {p.name: i for i, p in enumerate(logical.parameters)}
        columns = tuple(index[p.name] for p in isa.parameters)
        return PreparedCircuit(
            circuit=isa,
            measured=measured,
            num_logical_qubits=logical.num_qubits,
            columns=columns,
            depth=measured.depth(),
            width=_active_qubits(measured),
        )

    # -- execution -----------------------------------------------------------

    def estimate(
        self,
        prepared: PreparedCircuit,
        observable: SparsePauliOp,
        values: FloatArray,
        *,
        shots: int,
        seed: int,
    ) -> FloatArray:
        """Expectation values of a Z-only ``observable`` for each row of ``values``.

        All rows go to the backend in ONE call (a single PUB with a parameter array).

        Args:
            prepared: From :meth:`prepare`.
            observable: Diagonal observable on the logical qubits.
            values: ``(k, m)`` parameter matrix in the logical circuit's parameter order.
            shots: Shots per parameter set; ignored when :attr:`exact_expectation`.
            seed: Simulator seed for this call.

        Returns:
            ``(k,)`` expectation values.
        """
        values = np.atleast_2d(np.asarray(values, dtype=np.float64))
        used = 0 if self.exact_expectation else shots * values.shape[0]
        self._record(estimate=1, parameter_sets=values.shape[0], shots=used)
        return self._estimate(prepared, observable, values, shots=shots, seed=seed)

    def estimate_rows(
        self,
        prepared: PreparedCircuit,
        observables: Sequence[SparsePauliOp],
        values: FloatArray,
        *,
        shots: int,
        seed: int,
    ) -> FloatArray:
        """Expectation value of ``observables[i]`` for row ``i`` of ``values``, in ONE call.

        The cross-job batch (:mod:`.batching`): rows of different jobs share one
        circuit structure but not their cost observable. On Aer this is one
        EstimatorV2 PUB whose observables array broadcasts against the parameter
        array; on sampling backends, one sampler call and a per-row mean.

        Args:
            prepared: From :meth:`prepare`; every row binds this circuit.
            observables: One diagonal observable per row, on the logical qubits.
            values: ``(k, m)`` parameter matrix in the logical circuit's parameter order.
            shots: Shots per row; ignored when :attr:`exact_expectation`.
            seed: Simulator seed for this call.

        Returns:
            ``(k,)`` expectation values.

        Raises:
            ValueError: ``observables`` and ``values`` differ in length.
        """
        values = np.atleast_2d(np.asarray(values, dtype=np.float64))
        if len(observables) != values.shape[0]:
            raise ValueError(f"{len(observables)} observables for {values.shape[0]} rows")
        used = 0 if self.exact_expectation else shots * values.shape[0]
        self._record(estimate=1, parameter_sets=values.shape[0], shots=used)
        return self._estimate_rows(prepared, observables, values, shots=shots, seed=seed)

    def sample(
        self, prepared: PreparedCircuit, values: FloatArray, *, shots: int, seed: int
    ) -> BitMatrix:
        """Measure each row of ``values`` ``shots`` times, in ONE backend call.

        Returns:
            ``(k, shots, n)`` 0/1 array; column ``i`` is logical qubit ``i``
            (bit 1 means ``z_i = -1`` means ``x_i = 1``).
        """
        values = np.atleast_2d(np.asarray(values, dtype=np.float64))
        self._record(sample=1, parameter_sets=values.shape[0], shots=shots * values.shape[0])
        return self._sample(prepared, values, shots=shots, seed=seed)

    @abc.abstractmethod
    def _sample(
        self, prepared: PreparedCircuit, values: FloatArray, *, shots: int, seed: int
    ) -> BitMatrix:
        """Backend-specific sampling (see :meth:`sample`)."""

    def _estimate(
        self,
        prepared: PreparedCircuit,
        observable: SparsePauliOp,
        values: FloatArray,
        *,
        shots: int,
        seed: int,
    ) -> FloatArray:
        """Default: estimate by sampling, the only option on hardware-like targets."""
        bits = self._sample(prepared, values, shots=shots, seed=seed)
        return diagonal_expectation(bits, observable)

    def _estimate_rows(
        self,
        prepared: PreparedCircuit,
        observables: Sequence[SparsePauliOp],
        values: FloatArray,
        *,
        shots: int,
        seed: int,
    ) -> FloatArray:
        """Default: one sampling call, then each row's mean under its own observable."""
        bits = self._sample(prepared, values, shots=shots, seed=seed)
        return np.concatenate(
            [diagonal_expectation(bits[i : i + 1], obs) for i, obs in enumerate(observables)]
        )

    def _record(
        self, *, estimate: int = 0, sample: int = 0, parameter_sets: int = 0, shots: int = 0
    ) -> None:
        with self._stats_lock:
            self._stats.estimate_calls += estimate
            self._stats.sample_calls += sample
            self._stats.parameter_sets += parameter_sets
            self._stats.shots += shots

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, max_qubits={self.max_qubits})"


def diagonal_expectation(bits: BitMatrix, observable: SparsePauliOp) -> FloatArray:
    """Mean of a Z-only observable over sampled bitstrings.

    Args:
        bits: ``(k, shots, n)`` samples (bit ``i`` = logical qubit ``i``).
        observable: Sum of Z-strings on ``n`` qubits.

    Returns:
        ``(k,)`` sample means.

    Raises:
        ValueError: The observable has X or Y components.
    """
    paulis = observable.paulis
    if np.any(paulis.x):
        raise ValueError("only diagonal (Z-only) observables can be estimated from samples")
    k, shots, n = bits.shape
    masks = paulis.z.astype(np.int64)  # (terms, n)
    # SparsePauliOp keeps every sign in ``coeffs`` (its paulis carry no phase).
    coeffs = np.real(observable.coeffs)
    parity = (bits.reshape(k * shots, n).astype(np.int64) @ masks.T) & 1
    values = (1.0 - 2.0 * parity) @ coeffs
    return np.asarray(values.reshape(k, shots).mean(axis=1), dtype=np.float64)


def _with_logical_measurements(isa: QuantumCircuit, num_logical: int) -> QuantumCircuit:
    """Append measurements of each logical qubit's final physical position."""
    measured = isa.copy()
    register = ClassicalRegister(num_logical, MEASURE_REGISTER)
    measured.add_register(register)
    if isa.layout is None:
        physical = list(range(num_logical))
    else:
        physical = isa.layout.final_index_layout(filter_ancillas=True)
    for logical_index, phys in enumerate(physical):
        measured.measure(phys, register[logical_index])
    return measured


def _active_qubits(circuit: QuantumCircuit) -> int:
    touched = {
        circuit.find_bit(q).index
        for instruction in circuit.data
        if instruction.operation.name != "barrier"
        for q in instruction.qubits
    }
    return len(touched)
