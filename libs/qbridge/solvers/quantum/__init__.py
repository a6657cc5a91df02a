"""Quantum route: QAOA on Qiskit behind the common solver interface.

Public API:

* :class:`QaoaSolver` / :class:`QaoaSettings`: the solver (name ``qaoa``).
* :func:`make_backend` and :data:`BACKEND_NAMES`: backend adapters by name
  (``aer_statevector``, ``aer_mps``, ``fake_noisy``, ``runtime_local``, ``ibm_runtime``).
* :class:`QuantumBackend`: the one backend interface.
* :class:`TranspileCache`: structure-keyed transpile cache (``DEFAULT_TRANSPILE_CACHE``).
* :class:`FailingBackend`: failure injection (``make_backend(..., fail_with=...)``).
* Cross-job batching (:mod:`.batching`): :meth:`QaoaSolver.solve_many` /
  :meth:`QaoaSolver.solve_group` run compatible jobs' loops in lockstep, one
  backend call per optimizer step for all of them.
"""

from qbridge.solvers.quantum.backends import BACKEND_NAMES, make_backend
from qbridge.solvers.quantum.base import (
    BackendStats,
    PreparedCircuit,
    QuantumBackend,
    TranspileSettings,
)
from qbridge.solvers.quantum.cache import (
    DEFAULT_TRANSPILE_CACHE,
    CacheStats,
    StructureKey,
    TranspileCache,
)
from qbridge.solvers.quantum.faults import FailingBackend, FailureMode
from qbridge.solvers.quantum.qaoa import QaoaSettings, QaoaSolver

__all__ = [
    "BACKEND_NAMES",
    "DEFAULT_TRANSPILE_CACHE",
    "BackendStats",
    "CacheStats",
    "FailingBackend",
    "FailureMode",
    "PreparedCircuit",
    "QaoaSettings",
    "QaoaSolver",
    "QuantumBackend",
    "StructureKey",
    "TranspileCache",
    "TranspileSettings",
    "make_backend",
]
