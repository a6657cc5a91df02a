"""How long one QAOA evaluation takes on a statevector backend, predicted before it runs.

A statevector simulation costs about ``2^width x gates`` per parameter row, so the
time of a 20-qubit circuit follows from timed 14-16-qubit ones. QAOA uses the
prediction before its first (starting-point) evaluation: a job whose budget
cannot fit even one evaluation fails ``over_budget`` at once instead of holding
an executor in an uninterruptible simulator call for many times its budget (a
24-qubit starting batch took ~30 s for a 0.23 s budget), and a tight budget gets
fewer starting points.
"""

from __future__ import annotations

import threading

from qbridge.solvers.quantum.base import PreparedCircuit

_KEPT = 64
"""Circuit sizes remembered (the smallest are forgotten first)."""


def circuit_work(prepared: PreparedCircuit) -> float:
    """Amplitude updates of one parameter row: ``2^width x gates``."""
    return float(2**prepared.width) * max(1, prepared.circuit.size())


class EvaluationCost:
    """Seconds per parameter row, ``overhead + rate x work``, learned from timed evaluations.

    ``work`` is :func:`circuit_work`. The overhead is the fastest row timed (on the
    smallest circuits a row is almost all overhead); the rate is the lowest
    ``(seconds - overhead) / work`` among the largest circuits whose time is
    clearly above the overhead (they state it best). Before such a circuit was
    timed the rate is 0: the prediction errs towards letting a job run. Per
    circuit size the fastest row timed is kept. Thread-safe.
    """

    def __init__(self) -> None:
        self._fastest: dict[float, float] = {}  # work -> fastest seconds per row
        self._lock = threading.Lock()

    def observe(self, prepared: PreparedCircuit, rows: int, seconds: float) -> None:
        """Record an evaluation of ``rows`` rows of ``prepared`` that took ``seconds``."""
        if rows < 1 or seconds <= 0:
            return
        work, per_row = circuit_work(prepared), seconds / rows
        with self._lock:
            self._fastest[work] = min(per_row, self._fastest.get(work, per_row))
            if len(self._fastest) > _KEPT:
                del self._fastest[min(self._fastest)]

    def per_row(self, prepared: PreparedCircuit) -> float | None:
        """Predicted seconds of one row of ``prepared``, or None before any timing."""
        with self._lock:
            timed = sorted(self._fastest.items(), reverse=True)
        if not timed:
            return None
        overhead = min(s for _, s in timed)
        above = [(w, s - overhead) for w, s in timed if s > 2 * overhead][:4]
        rate = min((s / w for w, s in above), default=0.0)
        return overhead + rate * circuit_work(prepared)
