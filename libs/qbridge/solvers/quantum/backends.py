"""Backend adapters by name: the factory above the adapters.

:mod:`.base` holds the interface the adapters implement; this module imports
the adapters (:mod:`.aer`, :mod:`.runtime`) and the failure wrapper
(:mod:`.faults`), so it is the only place that knows all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qbridge.errors import ConfigurationError
from qbridge.solvers.quantum import aer, faults, runtime
from qbridge.solvers.quantum.base import QuantumBackend, TranspileSettings

BACKEND_NAMES = ("aer_statevector", "aer_mps", "fake_noisy", "runtime_local", "ibm_runtime")
"""Names accepted by :func:`make_backend`."""


def make_backend(name: str, **options: Any) -> QuantumBackend:
    """Build a backend adapter by name.

    Args:
        name: One of :data:`BACKEND_NAMES`:

            * ``aer_statevector`` (default route): exact expectations; options
              ``max_qubits`` (24).
            * ``aer_mps``: matrix-product-state simulator, exact while the bond
              dimension is not truncated; options ``max_qubits`` (64).
            * ``fake_noisy``: Aer with the noise model of a fake IBM device; options
              ``device`` (``"FakeGuadalupeV2"``, 16 qubits), ``max_qubits`` (min(device, 12)).
            * ``runtime_local``: qiskit-ibm-runtime's SamplerV2 in local testing mode
              on a fake device; options ``device`` (``"FakeManilaV2"``), ``twirling`` (True).
            * ``ibm_runtime``: a real IBM device through ``QiskitRuntimeService``
              (saved account or ``service_options``); options ``backend_name``
              (required), ``service_options``, ``twirling``.
        **options: Aer-based backends also take ``threads`` (1; 0 = all cores).
            Common to all: ``optimization_level`` (1), ``seed_transpiler`` (7),
            and the failure-injection options of :func:`qbridge.solvers.quantum.faults.wrap`
            (``fail_with``, ``fail_on``, ``fail_after``, ``fail_times``, ``slow_s``).

    Raises:
        ConfigurationError: Unknown name or option.
        BackendUnavailableError: ``ibm_runtime`` could not reach the service or device.
    """
    opts = dict(options)
    fault_opts = {k: opts.pop(k) for k in faults.FAULT_OPTIONS if k in opts}
    transpile = TranspileSettings(
        optimization_level=int(opts.pop("optimization_level", 1)),
        seed_transpiler=int(opts.pop("seed_transpiler", 7)),
    )
    builders: dict[str, Callable[..., QuantumBackend]] = {
        "aer_statevector": aer.AerStatevectorBackend,
        "aer_mps": aer.AerMpsBackend,
        "fake_noisy": aer.FakeNoisyBackend,
        "runtime_local": runtime.RuntimeBackend.local,
        "ibm_runtime": runtime.RuntimeBackend.ibm,
    }
    if name not in builders:
        raise ConfigurationError(
            f"unknown quantum backend {name!r} (known: {', '.join(BACKEND_NAMES)})"
        )
    try:
        backend = builders[name](transpile_settings=transpile, **opts)
    except TypeError as exc:
        raise ConfigurationError(f"bad options for backend {name!r}: {exc}") from exc
    return faults.wrap(backend, **fault_opts) if fault_opts else backend
