"""Qiskit Runtime adapter: the client-side ``SamplerV2`` of qiskit-ibm-runtime.

The same adapter serves two configurations, so promoting a tenant from the
local testing mode to a real device is configuration, not code:

* ``runtime_local``: ``SamplerV2(mode=<fake device>)`` runs locally on Aer with
  the device's noise model (qiskit-ibm-runtime's local testing mode), seeded;
* ``ibm_runtime``: ``SamplerV2(mode=<IBM device>)`` through ``QiskitRuntimeService``
  (credentials from the saved account or ``service_options``). Not exercised by
  the test suite (no credentials there).

We use the executor-based ``qiskit_ibm_runtime.executor_sampler.SamplerV2``:
the legacy ``qiskit_ibm_runtime.SamplerV2`` is deprecated since 0.50.
Expectation values are estimated from samples, as on hardware.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import qiskit_ibm_runtime
from qiskit.providers import BackendV2
from qiskit.transpiler import PassManager, generate_preset_pass_manager
from qiskit_ibm_runtime import exceptions as rt_errors
from qiskit_ibm_runtime.executor_sampler import SamplerV2

from qbridge.errors import (
    BackendUnavailableError,
    BudgetExceededError,
    ConfigurationError,
    SolverError,
    TransientSolverError,
)
from qbridge.solvers.quantum.aer import fake_device
from qbridge.solvers.quantum.base import (
    MEASURE_REGISTER,
    BitMatrix,
    FloatArray,
    PreparedCircuit,
    QuantumBackend,
    TranspileSettings,
)

logger = logging.getLogger(__name__)


class RuntimeBackend(QuantumBackend):
    """Qiskit Runtime ``SamplerV2`` on a device (fake and local, or real).

    Use :meth:`local` or :meth:`ibm` rather than the constructor.

    Args:
        name: ``runtime_local`` or ``ibm_runtime``.
        device: The device to run on (a fake device runs locally).
        local: Whether ``device`` is a fake device (enables simulator seeding).
        max_qubits: Accepted logical size.
        twirling: Let the runtime twirl gates and measurements (its default).
        transpile_settings: Transpiler settings.
    """

    def __init__(
        self,
        *,
        name: str,
        device: BackendV2,
        local: bool,
        max_qubits: int,
        twirling: bool = True,
        transpile_settings: TranspileSettings | None = None,
    ) -> None:
        super().__init__(max_qubits=max_qubits, transpile_settings=transpile_settings)
        self.name = name
        self._device = device
        self._local = local
        self._twirling = twirling

    @classmethod
    def local(
        cls,
        *,
        device: str = "FakeManilaV2",
        max_qubits: int | None = None,
        twirling: bool = True,
        transpile_settings: TranspileSettings | None = None,
    ) -> RuntimeBackend:
        """``runtime_local``: local testing mode on the fake device ``device``."""
        dev = fake_device(device)
        return cls(
            name="runtime_local",
            device=dev,
            local=True,
            max_qubits=min(dev.num_qubits, 12) if max_qubits is None else max_qubits,
            twirling=twirling,
            transpile_settings=transpile_settings,
        )

    @classmethod
    def ibm(
        cls,
        *,
        backend_name: str,
        service_options: Mapping[str, Any] | None = None,
        max_qubits: int | None = None,
        twirling: bool = True,
        transpile_settings: TranspileSettings | None = None,
    ) -> RuntimeBackend:
        """``ibm_runtime``: the real device ``backend_name``.

        Raises:
            BackendUnavailableError: The service or the device cannot be reached.
        """
        from qiskit_ibm_runtime import QiskitRuntimeService

        try:
            dev = QiskitRuntimeService(**dict(service_options or {})).backend(backend_name)
        except Exception as exc:  # any failure to reach the provider means: reroute
            raise BackendUnavailableError(
                f"IBM Runtime backend {backend_name!r} unavailable: {exc}"
            ) from exc
        return cls(
            name="ibm_runtime",
            device=dev,
            local=False,
            max_qubits=dev.num_qubits if max_qubits is None else max_qubits,
            twirling=twirling,
            transpile_settings=transpile_settings,
        )

    @property
    def version(self) -> str:
        """Device name and version, plus the qiskit-ibm-runtime version and mode."""
        mode = "local" if self._local else "cloud"
        return (
            f"{self._device.name} {getattr(self._device, 'backend_version', '')} / "
            f"qiskit-ibm-runtime {qiskit_ibm_runtime.__version__} ({mode})"
        )

    @property
    def target_key(self) -> str:
        """``runtime:<device name>``."""
        return f"runtime:{self._device.name}"

    @property
    def options(self) -> dict[str, Any]:
        """Device, mode and twirling."""
        return {"device": self._device.name, "local": self._local, "twirling": self._twirling}

    def _build_pass_manager(self) -> PassManager:
        return generate_preset_pass_manager(
            optimization_level=self.transpile_settings.optimization_level,
            backend=self._device,
            seed_transpiler=self.transpile_settings.seed_transpiler,
        )

    def _sample(
        self, prepared: PreparedCircuit, values: FloatArray, *, shots: int, seed: int
    ) -> BitMatrix:
        sampler = SamplerV2(mode=self._device)
        sampler.options.default_shots = shots
        if not self._twirling:
            sampler.options.twirling.enable_gates = False
            sampler.options.twirling.enable_measure = False
        if self._local:
            sampler.options.simulator.seed_simulator = seed
        try:
            job = sampler.run([(prepared.measured, prepared.bind_matrix(values))], shots=shots)
            result = job.result()
        except Exception as exc:
            raise _classify_runtime_error(exc) from exc
        bit_array = getattr(result[0].data, MEASURE_REGISTER)
        return np.asarray(bit_array.to_bool_array(order="little"), dtype=np.uint8)


def _classify_runtime_error(exc: Exception) -> Exception:
    """Map qiskit-ibm-runtime failures onto the platform's error classes."""
    if isinstance(exc, SolverError):
        return exc
    if isinstance(exc, rt_errors.RuntimeJobTimeoutError):
        return BudgetExceededError(f"runtime job timed out: {exc}")
    if isinstance(exc, (rt_errors.IBMNotAuthorizedError, rt_errors.IBMAccountError)):
        return BackendUnavailableError(f"runtime refused the job: {exc}")
    if isinstance(
        exc,
        (
            rt_errors.RuntimeJobFailureError,
            rt_errors.IBMRuntimeError,
            rt_errors.IBMApiError,
            rt_errors.IBMBackendApiError,
            ConnectionError,
            TimeoutError,
        ),
    ):
        return TransientSolverError(f"runtime job failed: {exc}")
    if isinstance(exc, rt_errors.IBMBackendError):
        return BackendUnavailableError(f"runtime backend error: {exc}")
    if isinstance(exc, (ValueError, TypeError)):
        # Our circuit or options were rejected: a defect, not worth a retry.
        return ConfigurationError(f"runtime rejected the job: {exc}")
    return exc
