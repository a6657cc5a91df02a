"""Aer adapters: statevector and MPS (exact), and noisy simulation of a fake device."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import qiskit_aer
from qiskit.providers import BackendV2
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler import PassManager, generate_preset_pass_manager
from qiskit_aer import AerSimulator
from qiskit_aer.primitives import EstimatorV2 as AerEstimatorV2
from qiskit_aer.primitives import SamplerV2 as AerSamplerV2

from qbridge.errors import ConfigurationError
from qbridge.solvers.quantum.base import (
    MEASURE_REGISTER,
    BitMatrix,
    FloatArray,
    PreparedCircuit,
    QuantumBackend,
    TranspileSettings,
    process_cached,
)

logger = logging.getLogger(__name__)

# Expectation values are rounded before they reach the optimizer: Aer's OpenMP
# reductions may differ in the last bits between runs, and COBYLA would amplify
# that into a different path. 1e-10 is far below any meaningful energy gap.
_EV_DECIMALS = 10


_PROBABILITIES_MAX_QUBITS = 16
"""Batched exact estimates read 2^n probabilities per row up to this width."""


def z_diagonal(observable: SparsePauliOp, num_qubits: int) -> FloatArray:
    """The diagonal of a Z-only observable over the ``2^num_qubits`` basis states.

    Basis state ``b`` has qubit ``i`` in bit ``i`` (Qiskit's little-endian order).

    Raises:
        ValueError: The observable has X or Y components.
    """
    paulis = observable.paulis
    if np.any(paulis.x):
        raise ValueError("only diagonal (Z-only) observables have a Z diagonal")
    masks = paulis.z.astype(np.int64) @ (1 << np.arange(num_qubits, dtype=np.int64))
    states = np.arange(2**num_qubits, dtype=np.int64)
    parity = (np.bitwise_count(states[:, None] & masks[None, :]) & 1).astype(np.int64)
    return np.asarray((1 - 2 * parity) @ np.real(observable.coeffs), dtype=np.float64)


DEFAULT_THREADS = 1
"""OpenMP threads per simulation. Measured on 2 shared cores, one thread was 1.2-5x
faster than Aer's default (all cores) at 12-20 qubits: busy-waiting OpenMP
threads collapse under contention and CPU quotas. Scale out with replicas."""


def aer_simulator(method: str, threads: int = DEFAULT_THREADS) -> AerSimulator:
    """The process-wide noiseless :class:`AerSimulator` for ``method``.

    Args:
        method: Aer simulation method.
        threads: ``max_parallel_threads`` (0 = all cores).
    """
    return process_cached(
        ("aer", method, threads),
        lambda: AerSimulator(method=method, max_parallel_threads=threads),
    )


def fake_device(device: str) -> BackendV2:
    """The process-wide fake IBM device ``device`` (e.g. ``"FakeManilaV2"``).

    Raises:
        ConfigurationError: No such fake device.
    """
    from qiskit_ibm_runtime import fake_provider

    cls = getattr(fake_provider, device, None)
    if cls is None or not device.startswith("Fake"):
        raise ConfigurationError(f"unknown fake device {device!r}")
    return process_cached(("fake_device", device), cls)


def noisy_simulator(device: str, threads: int = DEFAULT_THREADS) -> AerSimulator:
    """The process-wide Aer simulator carrying ``device``'s noise model (~1 s to build)."""
    return process_cached(
        ("noisy", device, threads),
        lambda: AerSimulator.from_backend(fake_device(device), max_parallel_threads=threads),
    )


def _sample_aer(
    simulator: AerSimulator, prepared: PreparedCircuit, values: FloatArray, shots: int, seed: int
) -> BitMatrix:
    sampler = AerSamplerV2.from_backend(simulator, seed=seed, default_shots=shots)
    pub = (prepared.measured, prepared.bind_matrix(values))
    result = sampler.run([pub], shots=shots).result()
    bit_array = getattr(result[0].data, MEASURE_REGISTER)
    return np.asarray(bit_array.to_bool_array(order="little"), dtype=np.uint8)


class _ExactAerBackend(QuantumBackend):
    """Noiseless Aer simulation with exact expectation values (EstimatorV2, precision 0)."""

    exact_expectation = True
    method: str

    def __init__(
        self, *, max_qubits: int, threads: int, transpile_settings: TranspileSettings | None
    ) -> None:
        if threads < 0:
            raise ConfigurationError(f"threads must be >= 0, got {threads}")
        super().__init__(max_qubits=max_qubits, transpile_settings=transpile_settings)
        self._threads = threads

    @property
    def version(self) -> str:
        """The qiskit-aer version."""
        return f"qiskit-aer {qiskit_aer.__version__} ({self.method})"

    @property
    def target_key(self) -> str:
        """``aer:<method>``."""
        return f"aer:{self.method}"

    @property
    def options(self) -> dict[str, Any]:
        """The simulation method and thread count."""
        return {"method": self.method, "threads": self._threads}

    def _build_pass_manager(self) -> PassManager:
        return generate_preset_pass_manager(
            optimization_level=self.transpile_settings.optimization_level,
            backend=aer_simulator(self.method),
            seed_transpiler=self.transpile_settings.seed_transpiler,
        )

    def _estimate(
        self,
        prepared: PreparedCircuit,
        observable: SparsePauliOp,
        values: FloatArray,
        *,
        shots: int,
        seed: int,
    ) -> FloatArray:
        return self._run_estimator(prepared, prepared.map_observable(observable), values)

    def _run_estimator(
        self, prepared: PreparedCircuit, observables: Any, values: FloatArray
    ) -> FloatArray:
        """One EstimatorV2 PUB (exact): ``observables`` broadcast against the rows."""
        estimator = AerEstimatorV2.from_backend(
            aer_simulator(self.method, self._threads), options={"default_precision": 0.0}
        )
        pub = (prepared.circuit, observables, prepared.bind_matrix(values))
        result = estimator.run([pub]).result()
        evs = np.asarray(result[0].data.evs, dtype=np.float64).reshape(-1)
        return np.round(evs, _EV_DECIMALS)

    def _estimate_rows(
        self,
        prepared: PreparedCircuit,
        observables: Sequence[SparsePauliOp],
        values: FloatArray,
        *,
        shots: int,
        seed: int,
    ) -> FloatArray:
        if prepared.circuit.num_qubits <= _PROBABILITIES_MAX_QUBITS:
            return self._estimate_rows_from_probabilities(prepared, observables, values)
        # ONE PUB: a (k,) observables array broadcast against (k, m) parameter rows,
        # so Aer runs the circuit once with k parameter binds (several PUBs would
        # be one simulator run each: Aer's EstimatorV2 loops over PUBs).
        mapped = np.empty(len(observables), dtype=object)
        mapped[:] = [prepared.map_observable(o) for o in observables]
        return self._run_estimator(prepared, mapped, values)

    def _estimate_rows_from_probabilities(
        self,
        prepared: PreparedCircuit,
        observables: Sequence[SparsePauliOp],
        values: FloatArray,
    ) -> FloatArray:
        # One simulator run with k parameter binds saving the basis-state
        # probabilities; each row's energy is then a dot product with its diagonal.
        # Aer's EstimatorV2 would read every Pauli term of every row back through
        # Python (~4 ms a row at 8 qubits on the dense template; this: ~0.5 ms).
        circuit = prepared.circuit.copy()
        circuit.save_probabilities()
        bound = prepared.bind_matrix(values)
        binds = {param: bound[:, i] for i, param in enumerate(circuit.parameters)}
        result = (
            aer_simulator(self.method, self._threads).run(circuit, parameter_binds=[binds]).result()
        )
        probabilities = np.array(
            [result.data(i)["probabilities"] for i in range(values.shape[0])], dtype=np.float64
        )
        diagonals: dict[int, FloatArray] = {}
        rows = []
        for obs in observables:
            if id(obs) not in diagonals:
                diagonals[id(obs)] = z_diagonal(prepared.map_observable(obs), circuit.num_qubits)
            rows.append(diagonals[id(obs)])
        evs = np.einsum("ij,ij->i", probabilities, np.array(rows))
        return np.round(evs, _EV_DECIMALS)

    def _sample(
        self, prepared: PreparedCircuit, values: FloatArray, *, shots: int, seed: int
    ) -> BitMatrix:
        return _sample_aer(aer_simulator(self.method, self._threads), prepared, values, shots, seed)


class AerStatevectorBackend(_ExactAerBackend):
    """``aer_statevector``: the default route; exact, memory-bound (16 B x 2^n).

    Args:
        max_qubits: Accepted circuit size; 24 qubits is a 256 MiB statevector.
        threads: OpenMP threads per simulation (0 = all cores).
        transpile_settings: Transpiler settings.
    """

    name = "aer_statevector"
    method = "statevector"
    statevector_cost = True

    def __init__(
        self,
        *,
        max_qubits: int = 24,
        threads: int = DEFAULT_THREADS,
        transpile_settings: TranspileSettings | None = None,
    ) -> None:
        super().__init__(
            max_qubits=max_qubits, threads=threads, transpile_settings=transpile_settings
        )


class AerMpsBackend(_ExactAerBackend):
    """``aer_mps``: matrix product state; more qubits, cost grows with entanglement.

    Args:
        max_qubits: Accepted circuit size.
        threads: OpenMP threads per simulation (0 = all cores).
        transpile_settings: Transpiler settings.
    """

    name = "aer_mps"
    method = "matrix_product_state"

    def __init__(
        self,
        *,
        max_qubits: int = 64,
        threads: int = DEFAULT_THREADS,
        transpile_settings: TranspileSettings | None = None,
    ) -> None:
        super().__init__(
            max_qubits=max_qubits, threads=threads, transpile_settings=transpile_settings
        )


class FakeNoisyBackend(QuantumBackend):
    """``fake_noisy``: Aer with a fake IBM device's noise model, coupling map and basis.

    Expectation values are estimated from samples (shots are spent), as on hardware.

    Args:
        device: Class name in ``qiskit_ibm_runtime.fake_provider``. The default
            16-qubit Falcon keeps the per-call cost low: Aer re-serializes the
            whole device noise model on every call (~0.1 s at 16 qubits, ~0.35 s
            at 27), which only batching amortizes.
        max_qubits: Accepted logical size; defaults to min(device qubits, 12)
            because noisy simulation runs one trajectory per shot, with a cost
            exponential in the qubits touched (12 qubits: ~20 ms per shot).
        threads: OpenMP threads per simulation (0 = all cores).
        transpile_settings: Transpiler settings.
    """

    name = "fake_noisy"

    def __init__(
        self,
        *,
        device: str = "FakeGuadalupeV2",
        max_qubits: int | None = None,
        threads: int = DEFAULT_THREADS,
        transpile_settings: TranspileSettings | None = None,
    ) -> None:
        self._device_name = device
        self._threads = threads
        size = fake_device(device).num_qubits
        limit = min(size, 12) if max_qubits is None else max_qubits
        if limit > size:
            raise ConfigurationError(f"max_qubits {limit} exceeds {device}'s {size} qubits")
        super().__init__(max_qubits=limit, transpile_settings=transpile_settings)

    @property
    def version(self) -> str:
        """Device name and calibration version, plus the Aer version."""
        dev = fake_device(self._device_name)
        calibration = getattr(dev, "backend_version", "")
        return f"{dev.name} {calibration} / qiskit-aer {qiskit_aer.__version__}"

    @property
    def target_key(self) -> str:
        """``device:<fake device class>``."""
        return f"device:{self._device_name}"

    @property
    def options(self) -> dict[str, Any]:
        """The fake device and thread count."""
        return {"device": self._device_name, "threads": self._threads}

    def _build_pass_manager(self) -> PassManager:
        return generate_preset_pass_manager(
            optimization_level=self.transpile_settings.optimization_level,
            backend=fake_device(self._device_name),
            seed_transpiler=self.transpile_settings.seed_transpiler,
        )

    def _sample(
        self, prepared: PreparedCircuit, values: FloatArray, *, shots: int, seed: int
    ) -> BitMatrix:
        simulator = noisy_simulator(self._device_name, self._threads)
        return _sample_aer(simulator, prepared, values, shots, seed)
