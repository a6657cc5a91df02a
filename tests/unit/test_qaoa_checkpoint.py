"""Checkpoint/resume of the QAOA optimizer loop: a killed run continues where it stopped."""

from __future__ import annotations

import random
from typing import Any

import pytest

from qbridge.samples import regular_maxcut
from qbridge.solvers.base import Budget
from qbridge.solvers.quantum.backends import make_backend
from qbridge.solvers.quantum.base import QuantumBackend
from qbridge.solvers.quantum.cache import TranspileCache
from qbridge.solvers.quantum.checkpoint import LoopCheckpoint, MemoryCheckpointStore
from qbridge.solvers.quantum.qaoa import QaoaSettings, QaoaSolver

SETTINGS = QaoaSettings(p=2, maxiter=20, tol=1e-9)
BUDGET = Budget(time_limit_s=600, shots=1024, seed=3)
KILL_AT = 6
"""The run dies during optimizer iteration KILL_AT + 1 (checkpoint of KILL_AT saved)."""


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs in the solver."""


class RecordingStore(MemoryCheckpointStore):
    def __init__(self) -> None:
        super().__init__()
        self.iterations: list[int] = []

    def save(self, key: str, checkpoint: LoopCheckpoint) -> None:
        super().save(key, checkpoint)
        self.iterations.append(checkpoint.iteration)


def counting(kill_at_call: int | None = None) -> tuple[QuantumBackend, list[int]]:
    backend = make_backend("aer_statevector")
    calls: list[int] = []
    estimate = backend.estimate

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if kill_at_call is not None and len(calls) == kill_at_call:
            raise Killed
        return estimate(*args, **kwargs)

    backend.estimate = wrapped  # type: ignore[method-assign]
    return backend, calls


def solve(backend: QuantumBackend, store: MemoryCheckpointStore | None, key: str | None) -> Any:
    problem = regular_maxcut(6, random.Random(5))
    solver = QaoaSolver(backend, SETTINGS, cache=TranspileCache(), checkpoints=store)
    return solver.solve(problem, BUDGET, checkpoint_key=key)


def test_resumed_run_does_not_repeat_iterations() -> None:
    store = RecordingStore()
    # Call 1 is the starting batch, call i + 1 is optimizer iteration i.
    backend, killed_calls = counting(kill_at_call=KILL_AT + 2)
    with pytest.raises(Killed):
        solve(backend, store, "job-1:1")
    assert len(killed_calls) == KILL_AT + 2
    assert store.iterations == list(range(KILL_AT + 1))
    saved = store.load("job-1:1")
    assert saved is not None and saved.iteration == KILL_AT and saved.calls == KILL_AT + 1

    store.iterations.clear()
    backend, resumed_calls = counting()
    out = solve(backend, store, "job-1:1")
    assert store.iterations and min(store.iterations) == KILL_AT + 1  # nothing <= k again
    settings = out.provenance.settings
    assert settings["resumed_from_iteration"] == KILL_AT
    assert out.provenance.optimizer_iterations == max(store.iterations)
    # Only the remaining iterations hit the backend (estimates; sampling is separate).
    assert len(resumed_calls) == max(store.iterations) - KILL_AT
    assert store.load("job-1:1") is None  # finished: checkpoint removed

    backend, fresh_calls = counting()
    fresh = solve(backend, None, None)
    assert fresh.provenance.settings["resumed_from_iteration"] is None
    assert len(fresh_calls) == 1 + fresh.provenance.optimizer_iterations
    assert len(resumed_calls) < len(fresh_calls)


def test_checkpoint_round_trips_as_json() -> None:
    cp = LoopCheckpoint(3, 20, [0.1, 0.2], [0.1, 0.2], -1.5, 4, 19, 0, 19, 0.01)
    assert LoopCheckpoint.from_json(cp.to_json()) == cp
