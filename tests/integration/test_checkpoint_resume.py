"""QAOA checkpoint/resume with a real SIGKILL and checkpoints in the real PostgreSQL.

A child process runs QAOA and is SIGKILLed during optimizer iteration k + 1; the
re-run (as on redelivery of the same work item) resumes from the checkpoint of
iteration k in PostgreSQL: it repeats no iteration <= k, and its backend calls are
only the remaining iterations.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
from typing import Any

import pytest

from qbridge.samples import regular_maxcut
from qbridge.solvers.base import Budget
from qbridge.solvers.quantum.backends import make_backend
from qbridge.solvers.quantum.cache import TranspileCache
from qbridge.solvers.quantum.checkpoint import LoopCheckpoint, PostgresCheckpointStore
from qbridge.solvers.quantum.qaoa import QaoaSettings, QaoaSolver

pytestmark = pytest.mark.integration

SETTINGS = QaoaSettings(p=2, maxiter=20, tol=1e-9)
BUDGET = Budget(time_limit_s=600, shots=1024, seed=9)
K = 5
KEY = "ckpt-job:1"


class Recording(PostgresCheckpointStore):
    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        self.iterations: list[int] = []

    def save(self, key: str, checkpoint: LoopCheckpoint) -> None:
        super().save(key, checkpoint)
        self.iterations.append(checkpoint.iteration)


def run(store: PostgresCheckpointStore, kill_at_call: int | None) -> tuple[Any, int]:
    backend = make_backend("aer_statevector")
    calls = [0]
    estimate = backend.estimate

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == kill_at_call:
            os.kill(os.getpid(), signal.SIGKILL)
        return estimate(*args, **kwargs)

    backend.estimate = counted  # type: ignore[method-assign]
    solver = QaoaSolver(backend, SETTINGS, cache=TranspileCache(), checkpoints=store)
    out = solver.solve(regular_maxcut(6, random.Random(2)), BUDGET, checkpoint_key=KEY)
    return out, calls[0]


def _child(dsn: str) -> None:
    run(PostgresCheckpointStore(dsn), K + 2)  # call 1: starting batch; call i + 1: iteration i


def test_sigkilled_run_resumes_from_its_last_checkpoint(database_url: str) -> None:
    store = Recording(database_url)
    store.delete(KEY)
    child = multiprocessing.get_context("spawn").Process(target=_child, args=(database_url,))
    child.start()
    child.join(300)
    assert child.exitcode == -signal.SIGKILL
    saved = store.load(KEY)
    assert saved is not None and saved.iteration == K and saved.calls == K + 1

    out, calls = run(store, None)
    assert store.iterations and min(store.iterations) == K + 1
    assert out.provenance.settings["resumed_from_iteration"] == K
    assert calls == out.provenance.optimizer_iterations - K
    assert store.load(KEY) is None
    store.close()
