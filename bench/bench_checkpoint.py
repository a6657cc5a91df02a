"""Benchmark: backend calls saved by resuming a killed QAOA run from its checkpoint.

One QAOA run (MaxCut, 10 nodes, p=2, COBYLA, 40 iterations, statevector) is killed
during optimizer iteration ``k + 1`` (after the checkpoint of iteration ``k`` was
saved). Then the same work item runs again twice: once resuming from the checkpoint,
once from scratch (what the executor did before checkpoints). Reported: backend
``estimate`` calls of each and the calls saved.

With ``--dsn`` the kill is a real ``SIGKILL`` of a child process and the checkpoint
lives in PostgreSQL (:class:`PostgresCheckpointStore`); without it the kill is
simulated in-process (an exception nothing catches) with an in-memory store.

Usage::

    .venv/bin/python bench/bench_checkpoint.py [--kill-at 10] [--dsn postgresql://...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import signal
from typing import Any

from qbridge.samples import regular_maxcut
from qbridge.solvers.base import Budget
from qbridge.solvers.quantum.backends import make_backend
from qbridge.solvers.quantum.cache import TranspileCache
from qbridge.solvers.quantum.checkpoint import (
    CheckpointStore,
    MemoryCheckpointStore,
    PostgresCheckpointStore,
)
from qbridge.solvers.quantum.qaoa import QaoaSettings, QaoaSolver

SETTINGS = QaoaSettings(p=2, maxiter=40, tol=1e-9)
BUDGET = Budget(time_limit_s=600, shots=2048, seed=11)
KEY = "bench-job:1"


class _Killed(BaseException):
    pass


def run(store: CheckpointStore | None, kill_at_call: int | None, hard: bool) -> dict[str, Any]:
    backend = make_backend("aer_statevector")
    calls = [0]
    estimate = backend.estimate

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if kill_at_call is not None and calls[0] == kill_at_call:
            if hard:
                os.kill(os.getpid(), signal.SIGKILL)
            raise _Killed
        return estimate(*args, **kwargs)

    backend.estimate = counted  # type: ignore[method-assign]
    problem = regular_maxcut(10, random.Random(4))
    solver = QaoaSolver(backend, SETTINGS, cache=TranspileCache(), checkpoints=store)
    out = solver.solve(problem, BUDGET, checkpoint_key=KEY if store is not None else None)
    return {
        "estimate_calls": calls[0],
        "iterations": out.provenance.optimizer_iterations,
        "objective": out.best.objective,
        "resumed_from": out.provenance.settings["resumed_from_iteration"],
    }


def _child(dsn: str, kill_at_call: int) -> None:
    run(PostgresCheckpointStore(dsn), kill_at_call, hard=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--kill-at", type=int, default=10, help="iteration k of the last checkpoint"
    )
    parser.add_argument("--dsn", help="PostgreSQL DSN: real SIGKILL + durable checkpoints")
    args = parser.parse_args()
    kill_call = args.kill_at + 2  # call 1: starting batch; call i + 1: iteration i
    store: CheckpointStore
    if args.dsn:
        pg = PostgresCheckpointStore(args.dsn)
        pg.delete(KEY)
        child = multiprocessing.get_context("spawn").Process(
            target=_child, args=(args.dsn, kill_call)
        )
        child.start()
        child.join()
        assert child.exitcode == -signal.SIGKILL, child.exitcode
        store = pg
        mode = "SIGKILL, PostgreSQL checkpoints"
    else:
        store = MemoryCheckpointStore()
        with contextlib.suppress(_Killed):
            run(store, kill_call, hard=False)
        mode = "simulated kill, in-memory checkpoints"
    saved = store.load(KEY)
    assert saved is not None and saved.iteration == args.kill_at
    before_kill = args.kill_at + 1  # calls paid before the kill (batch + k iterations)
    resumed = run(store, None, hard=False)
    scratch = run(None, None, hard=False)
    report = {
        "mode": mode,
        "kill_at_iteration": args.kill_at,
        "calls_before_kill": before_kill,
        "resume": resumed,
        "restart": scratch,
        "calls_saved": scratch["estimate_calls"] - resumed["estimate_calls"],
        "total_calls_resume": before_kill + resumed["estimate_calls"],
        "total_calls_restart": before_kill + scratch["estimate_calls"],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
