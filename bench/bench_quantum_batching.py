"""Small QAOA jobs per second, before and after cross-job batching, side by side.

At the executor level without Kafka: the quantum executor's batch handler
(:meth:`qbridge.executor.app.ExecutorApp.handle_batch`, ``concurrency`` solves at
a time, as in the service) with its real solver provider
(:class:`quantum_executor.solvers.QuantumSolvers`), a producer stub that keeps
the outcome records, and consumer batches of ``--batch`` work items (the
executor's cap: 16 items per concurrent solve). The only difference between the
two arms is ``group_max`` (the ``QBRIDGE_CROSS_JOB_BATCHING`` setting): off, each
item runs its own QAOA loop (one backend call per optimizer step and job); on,
compatible items run in lockstep (one backend call per step for all of them).

Rounds alternate the arms (off, on, on, off, ...) on the same jobs, so machine
noise (2 shared cores) hits both alike; the table reports the median jobs/s of
each arm and their ratio, plus backend calls per job.

Scenarios (weighted MaxCut, fixed iteration budget ``--maxiter``):

* ``n8``: every job an 8-node graph (one compatible group per consumer batch);
* ``n6-10``: 6 to 10 nodes mixed (groups per size, as the dense template is per n);
* ``n12-sub1s``: 12-node graphs (the largest on the dense template) with the
  budgets of gateway Solve calls: 0.2 s and 1 s alternating, as in
  ``bench_gateway_overload.py``, each also the item's deadline (from the batch's
  arrival, so queueing counts). Jobs whose budget is spent before one evaluation
  fail ``over_budget`` in either arm; the table reports the jobs answered per
  second and the share answered (``ok``). Only with ``--budgets``.
* ``noisy``: ``fake_noisy`` (FakeGuadalupeV2 noise model, shot-based) with rings of
  6 nodes and different weights (same sparsity: shot-based backends batch only
  equal circuits), 4096 shots per job (half of them fund the optimizer: 256 per
  estimate, so about 4 starting points and 4 iterations). Only with ``--noisy``.

Usage::

    .venv/bin/python bench/bench_quantum_batching.py            # ~3-5 min on 2 cores
    .venv/bin/python bench/bench_quantum_batching.py --quick    # smoke run (~1 min)
    .venv/bin/python bench/bench_quantum_batching.py --budgets --noisy   # every scenario

Prints a table and writes JSON to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from qbridge.bus import Record
from qbridge.executor.app import ExecutorApp
from qbridge.executor.worker import WorkerSettings
from qbridge.solvers.quantum import QaoaSettings
from qbridge.solvers.quantum.qaoa import sdk_versions
from qbridge.topics import SOLVER_OUTCOMES
from quantum_executor.solvers import QuantumSolvers

RESULTS = Path(__file__).resolve().parent / "results"


class _Producer:
    """Keeps the outcome records (stands in for the Kafka producer)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, topic: Any, value: Any, key: Any = None, headers: Any = None) -> None:
        self.sent.append(value)

    def close(self) -> None:
        """Nothing to deliver."""


class _Consumer:
    stopping = False

    def close(self) -> None:
        """Nothing to commit."""


def maxcut_payload(n: int, seed: int, ring_only: bool = False) -> dict[str, Any]:
    """A connected weighted graph: a ring plus (unless ``ring_only``) random chords."""
    rng = random.Random(f"qaoa-batch-{n}-{seed}")
    edges = {tuple(sorted((i, (i + 1) % n))) for i in range(n)}
    if not ring_only:
        edges |= {(i, j) for i in range(n) for j in range(i + 2, n) if rng.random() < 0.3}
    return {
        "num_nodes": n,
        "edges": [
            {"u": u, "v": v, "weight": round(rng.uniform(0.5, 2.0), 3)} for u, v in sorted(edges)
        ],
    }


def work_items(
    jobs: int,
    sizes: list[int],
    backend: str,
    ring_only: bool,
    seed: int,
    shots: int = 1024,
    time_limits_ms: tuple[int, ...] = (600_000,),
) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    items = []
    for i in range(jobs):
        n = sizes[i % len(sizes)]
        items.append(
            {
                "work_id": f"bench-{seed}-{i}:1:quantum",
                "job_id": f"bench-{seed}-{i}",
                "attempt": 1,
                "route": "quantum",
                "backend": backend,
                "tenant": "bench",
                "problem_type": "maxcut",
                "problem": maxcut_payload(n, seed * 1000 + i, ring_only),
                "time_limit_ms": time_limits_ms[i % len(time_limits_ms)],
                "shots": shots,
                "seed": i,
                "top_n": 3,
                "priority": 5,
                # Long budgets: a far deadline. Solve-sized budgets: the budget is the
                # job's deadline, so time spent queued in the batch counts (as for Solve).
                "deadline_at": now
                + (
                    timedelta(hours=1)
                    if time_limits_ms == (600_000,)
                    else timedelta(milliseconds=time_limits_ms[i % len(time_limits_ms)])
                ),
                "correlation_id": f"bench-{i}",
                "enqueued_at": now,
            }
        )
    return items


def executor(solvers: QuantumSolvers, concurrency: int, group_max: int) -> ExecutorApp:
    """The quantum executor's app around ``solvers``, without Kafka."""
    return ExecutorApp(
        "quantum-executor",
        _Consumer(),  # type: ignore[arg-type]
        _Producer(),  # type: ignore[arg-type]
        SOLVER_OUTCOMES,
        solvers,
        worker=WorkerSettings(default_shots=1024),
        concurrency=concurrency,
        group_max=group_max,
    )


def run_arm(
    app: ExecutorApp,
    solvers: QuantumSolvers,
    items: list[dict[str, Any]],
    batch: int,
    over_budget_ok: bool = False,
) -> dict[str, Any]:
    """Push ``items`` through the executor's batch handler; jobs/s and backend calls.

    Raises:
        RuntimeError: A job failed (``over_budget`` is counted instead when
            ``over_budget_ok``).
    """
    producer = app.producer
    assert isinstance(producer, _Producer)
    producer.sent.clear()
    backends = {item["backend"] for item in items}
    calls_before = sum(_calls(solvers, b) for b in backends)
    records = [
        Record("work", 0, i, item["job_id"].encode(), item, "qbridge.WorkItem", {}, 0)
        for i, item in enumerate(items)
    ]
    start = time.perf_counter()
    for offset in range(0, len(records), batch):
        app.handle_batch(records[offset : offset + batch])
    wall = time.perf_counter() - start
    final = [r for r in producer.sent if r["status"] != "started"]
    ok = [r for r in final if r["status"] == "ok"]
    errors = [r["error"] for r in final if r["status"] != "ok"]
    over = sum(e["error_class"] == "over_budget" for e in errors)
    if len(ok) + (over if over_budget_ok else 0) != len(items):
        raise RuntimeError(f"{len(items) - len(ok)} of {len(items)} jobs failed: {errors[:3]}")
    calls = sum(_calls(solvers, b) for b in backends) - calls_before
    return {
        "jobs_per_s": len(ok) / wall,
        "ok_share": len(ok) / len(items),
        "wall_s": wall,
        "backend_calls_per_job": calls / len(items),
        "mean_objective": statistics.fmean(r["solution"]["objective"] for r in ok),
    }


def _calls(solvers: QuantumSolvers, backend: str) -> int:
    stats = solvers.solver(backend).backend.stats()
    return stats.estimate_calls + stats.sample_calls


def scenario(
    name: str,
    *,
    backend: str,
    sizes: list[int],
    p: int,
    args: argparse.Namespace,
    ring_only: bool = False,
    shots: int = 1024,
    time_limits_ms: tuple[int, ...] = (600_000,),
) -> dict[str, Any]:
    settings = QaoaSettings(p=p, maxiter=args.maxiter)
    short = time_limits_ms != (600_000,)
    solvers = QuantumSolvers([backend], settings)
    apps = {
        "off": executor(solvers, args.concurrency, group_max=0),
        "on": executor(solvers, args.concurrency, group_max=args.batch),
    }
    # Warm the simulator, pass manager and transpile cache for both arms alike.
    warm = work_items(min(2 * len(sizes), args.jobs), sizes, backend, ring_only, 999, shots)
    for app in apps.values():
        run_arm(app, solvers, warm, args.batch)
    arms: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for r in range(args.rounds):
        for arm in ("off", "on") if r % 2 == 0 else ("on", "off"):
            # Built per arm: the budgets run from the items' enqueue time.
            items = work_items(args.jobs, sizes, backend, ring_only, r, shots, time_limits_ms)
            arms[arm].append(run_arm(apps[arm], solvers, items, args.batch, short))
    for app in apps.values():
        app.close()
    off = statistics.median(x["jobs_per_s"] for x in arms["off"])
    on = statistics.median(x["jobs_per_s"] for x in arms["on"])
    row = {
        "scenario": name,
        "backend": backend,
        "sizes": sizes,
        "p": p,
        "jobs": args.jobs,
        "rounds": args.rounds,
        "off_jobs_per_s": off,
        "on_jobs_per_s": on,
        "ratio": on / off,
        "off_calls_per_job": statistics.fmean(x["backend_calls_per_job"] for x in arms["off"]),
        "on_calls_per_job": statistics.fmean(x["backend_calls_per_job"] for x in arms["on"]),
        "off_mean_objective": statistics.fmean(x["mean_objective"] for x in arms["off"]),
        "on_mean_objective": statistics.fmean(x["mean_objective"] for x in arms["on"]),
        "time_limits_ms": list(time_limits_ms),
        "off_ok_share": statistics.fmean(x["ok_share"] for x in arms["off"]),
        "on_ok_share": statistics.fmean(x["ok_share"] for x in arms["on"]),
        "runs": arms,
    }
    print(
        f"{name:<9} {backend:<16} p={p} {args.jobs:>4} {off:>9.2f} {on:>9.2f} "
        f"{row['ratio']:>6.2f}x {row['off_calls_per_job']:>7.1f} {row['on_calls_per_job']:>7.2f}"
        f" {row['off_mean_objective']:>8.2f} {row['on_mean_objective']:>8.2f}"
        f" {row['off_ok_share']:>6.0%} {row['on_ok_share']:>6.0%}",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--jobs", type=int, default=32, help="jobs per round and arm")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per arm (alternating)")
    parser.add_argument("--batch", type=int, default=32, help="work items per consumer batch")
    parser.add_argument("--concurrency", type=int, default=2, help="concurrent solves (cores)")
    parser.add_argument("--maxiter", type=int, default=20, help="optimizer iterations per job")
    parser.add_argument("--noisy", action="store_true", help="add the fake_noisy scenario")
    parser.add_argument(
        "--budgets", action="store_true", help="add the Solve-budget scenario (0.2 s / 1 s)"
    )
    parser.add_argument("--budgets-only", action="store_true", help="only that scenario")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.rounds = 16, 1
    print(
        f"{'scenario':<9} {'backend':<16} {'p':>3} {'jobs':>4} {'off j/s':>9} {'on j/s':>9} "
        f"{'ratio':>7} {'calls/j':>7} {'calls/j':>7} {'obj off':>8} {'obj on':>8}"
        f" {'ok off':>6} {'ok on':>6}"
    )
    started = time.perf_counter()
    rows = []
    for p in () if args.budgets_only else (1, 2):
        rows.append(scenario("n8", backend="aer_statevector", sizes=[8], p=p, args=args))
        rows.append(
            scenario("n6-10", backend="aer_statevector", sizes=[6, 7, 8, 9, 10], p=p, args=args)
        )
    if args.budgets or args.budgets_only:
        rows.append(
            scenario(
                "n12-sub1s",
                backend="aer_statevector",
                sizes=[12],
                p=2,
                args=args,
                time_limits_ms=(200, 1000),
            )
        )
    if args.noisy:
        rows.append(
            scenario(
                "noisy",
                backend="fake_noisy",
                sizes=[6],
                p=1,
                args=args,
                ring_only=True,
                shots=4096,
            )
        )
    report = {
        "benchmark": "bench_quantum_batching",
        "level": "executor batch handler + solver provider, no Kafka",
        "quick": args.quick,
        "args": vars(args),
        "when": datetime.now(UTC).isoformat(),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "sdk_versions": sdk_versions(),
        "scenarios": rows,
        "wall_s": time.perf_counter() - started,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"bench_quantum_batching-{'quick-' if args.quick else ''}{stamp}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out} ({report['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
