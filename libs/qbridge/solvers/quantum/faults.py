"""Failure injection for testing the platform's error handling.

Wrap any backend so that its backend calls (``estimate`` / ``sample``) fail the
way a real provider fails, raising the *classified* errors of
:mod:`qbridge.errors`:

* ``fail_with="unavailable"`` -> :class:`~qbridge.errors.BackendUnavailableError` (reroute),
* ``fail_with="transient"`` -> :class:`~qbridge.errors.TransientSolverError` (retry),
* ``fail_with="slow"`` -> each call first sleeps ``slow_s`` seconds, so the solver
  runs out of ``Budget.time_limit_s`` and raises
  :class:`~qbridge.errors.BudgetExceededError` (degrade) when not even its first
  evaluation fits.

Usage: ``make_backend("aer_statevector", fail_with="transient", fail_times=2)``
(fails the first two calls, then recovers) or ``FailingBackend(inner, "unavailable")``.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler import PassManager

from qbridge.errors import BackendUnavailableError, ConfigurationError, TransientSolverError
from qbridge.solvers.quantum.base import (
    BackendStats,
    BitMatrix,
    FloatArray,
    PreparedCircuit,
    QuantumBackend,
)

logger = logging.getLogger(__name__)

FAULT_OPTIONS = ("fail_with", "fail_on", "fail_after", "fail_times", "slow_s")
"""Options of :func:`make_backend` that are routed to :func:`wrap`."""


class FailureMode(enum.StrEnum):
    """What an injected failure looks like."""

    UNAVAILABLE = "unavailable"
    TRANSIENT = "transient"
    SLOW = "slow"


class FailingBackend(QuantumBackend):
    """A backend whose calls fail on purpose; everything else is delegated.

    Args:
        inner: The real backend.
        fail_with: A :class:`FailureMode` (or its value).
        fail_on: Which calls fail: ``"estimate"``, ``"sample"`` or ``"any"``.
        fail_after: Number of matching calls that succeed before failures start.
        fail_times: How many calls fail before the backend recovers; None = forever.
        slow_s: Delay per call in ``slow`` mode.
    """

    def __init__(
        self,
        inner: QuantumBackend,
        fail_with: FailureMode | str,
        *,
        fail_on: str = "any",
        fail_after: int = 0,
        fail_times: int | None = None,
        slow_s: float = 2.0,
    ) -> None:
        try:
            self.mode = FailureMode(fail_with)
        except ValueError as exc:
            known = ", ".join(m.value for m in FailureMode)
            raise ConfigurationError(
                f"fail_with must be one of {known}, got {fail_with!r}"
            ) from exc
        if fail_on not in ("estimate", "sample", "any"):
            raise ConfigurationError(f"fail_on must be estimate, sample or any, got {fail_on!r}")
        super().__init__(max_qubits=inner.max_qubits, transpile_settings=inner.transpile_settings)
        self.inner = inner
        self.name = inner.name
        self.exact_expectation = inner.exact_expectation
        self._fail_on = fail_on
        self._fail_after = fail_after
        self._fail_times = fail_times
        self._slow_s = slow_s
        self._calls = 0
        self._failures = 0
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        """The wrapped backend's version."""
        return self.inner.version

    @property
    def target_key(self) -> str:
        """The wrapped backend's target key (faults do not change circuits)."""
        return self.inner.target_key

    @property
    def options(self) -> dict[str, Any]:
        """The wrapped backend's options plus the injected fault."""
        return {**self.inner.options, "injected_fault": self.mode.value}

    @property
    def failures(self) -> int:
        """How many failures were injected so far."""
        with self._lock:
            return self._failures

    def stats(self) -> BackendStats:
        """The wrapped backend's counters (failed calls never reach it)."""
        return self.inner.stats()

    def _build_pass_manager(self) -> PassManager:
        return self.inner.pass_manager()[0]

    def prepare(self, logical: QuantumCircuit) -> PreparedCircuit:
        """Delegated: transpilation is local and does not fail."""
        return self.inner.prepare(logical)

    def estimate(
        self,
        prepared: PreparedCircuit,
        observable: SparsePauliOp,
        values: FloatArray,
        *,
        shots: int,
        seed: int,
    ) -> FloatArray:
        """Inject the fault (if due), then delegate."""
        self._maybe_fail("estimate")
        return self.inner.estimate(prepared, observable, values, shots=shots, seed=seed)

    def estimate_rows(
        self,
        prepared: PreparedCircuit,
        observables: Sequence[SparsePauliOp],
        values: FloatArray,
        *,
        shots: int,
        seed: int,
    ) -> FloatArray:
        """Inject the fault (if due), then delegate (a batched estimate is one call)."""
        self._maybe_fail("estimate")
        return self.inner.estimate_rows(prepared, observables, values, shots=shots, seed=seed)

    def sample(
        self, prepared: PreparedCircuit, values: FloatArray, *, shots: int, seed: int
    ) -> BitMatrix:
        """Inject the fault (if due), then delegate."""
        self._maybe_fail("sample")
        return self.inner.sample(prepared, values, shots=shots, seed=seed)

    def _sample(
        self, prepared: PreparedCircuit, values: FloatArray, *, shots: int, seed: int
    ) -> BitMatrix:
        return self.sample(prepared, values, shots=shots, seed=seed)

    def _maybe_fail(self, call: str) -> None:
        if self._fail_on not in ("any", call):
            return
        with self._lock:
            self._calls += 1
            due = self._calls > self._fail_after and (
                self._fail_times is None or self._failures < self._fail_times
            )
            if due:
                self._failures += 1
        if not due:
            return
        logger.info("injecting %s failure into %s.%s", self.mode.value, self.name, call)
        if self.mode is FailureMode.UNAVAILABLE:
            raise BackendUnavailableError(f"injected: backend {self.name} unavailable")
        if self.mode is FailureMode.TRANSIENT:
            raise TransientSolverError(f"injected: transient failure of {self.name}")
        time.sleep(self._slow_s)


def wrap(
    backend: QuantumBackend,
    *,
    fail_with: str | None = None,
    fail_on: str = "any",
    fail_after: int = 0,
    fail_times: int | None = None,
    slow_s: float = 2.0,
) -> QuantumBackend:
    """Wrap ``backend`` in a :class:`FailingBackend` when ``fail_with`` is set."""
    if fail_with is None:
        return backend
    return FailingBackend(
        backend,
        fail_with,
        fail_on=fail_on,
        fail_after=fail_after,
        fail_times=fail_times,
        slow_s=slow_s,
    )
