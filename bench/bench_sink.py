"""Benchmark: the results sink's batch write, row by row (a baseline revision) vs multi-row.

Both stores write the same pipeline-shaped stream into a real PostgreSQL (tools/devstack,
one database each): every small classical job brings 8 records, as in the running
pipeline (its envelope; transitions accepted, routed, running, succeeded; solver
outcomes started and ok; the final outcome with 3 candidates). A job's records are
spread over the stream (``--spread``: jobs between two stages of one job) and the
stream is cut into batches of ``--batch`` records, each written with one
``ResultsStore.record_batch`` call (one transaction), as the consumer hands them over.

The baseline is ``services/results-sink/results_sink/store.py`` of ``--baseline``
(a git revision, default ``main``), loaded next to the current one. Reported per job,
median over ``--rounds`` alternating rounds: the sink's CPU in ``record_batch``
(process time), the CPU of the PostgreSQL backend serving it and of the whole server
(backends, WAL writer, autovacuum; from /proc), and the wall time. CPU per job is what
matters on a shared machine: wall time moves with other load, CPU per job much less.
Afterwards both databases must hold the same rows (compared table by table).

Usage::

    .venv/bin/python bench/bench_sink.py [--jobs 2000] [--batch 100] [--spread 3]
        [--rounds 3] [--baseline main]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from devstack import PostgresServer
from qbridge.contracts.convert import problem_to_avro
from qbridge.db.pool import make_pool
from qbridge.samples import regular_maxcut
from results_sink import mapping as m
from results_sink.migrate import migrate
from results_sink.store import ResultsStore

REPO = Path(__file__).resolve().parents[1]
STORE = "services/results-sink/results_sink/store.py"
T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
_TICK = os.sysconf("SC_CLK_TCK")
TABLES = {
    "jobs": "job_id",
    "status_transitions": "job_id, seq",
    "attempts": "work_id",
    "solutions": "job_id",
    "candidates": "job_id, rank",
}
VOLATILE = {"recorded_at", "first_seen_at", "updated_at"}


def load_baseline(rev: str) -> type[ResultsStore]:
    """``ResultsStore`` of ``store.py`` at git revision ``rev`` (a module of its own)."""
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{rev}:{STORE}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "baseline_store.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_store", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Its metrics are already registered by the current store: use a private registry.
    import prometheus_client

    real_counter = prometheus_client.Counter
    prometheus_client.Counter = lambda *a, **k: real_counter(  # type: ignore[assignment,misc]
        *a, **k, registry=prometheus_client.CollectorRegistry()
    )
    try:
        spec.loader.exec_module(module)
    finally:
        prometheus_client.Counter = real_counter  # type: ignore[misc]
    store: type[ResultsStore] = module.ResultsStore
    return store


# --- the stream -----------------------------------------------------------------------


def job_records(job_id: str, tenant: str, rng: random.Random) -> list[Any]:
    """The 8 rows one small classical job writes, in pipeline order."""
    problem = regular_maxcut(8, rng)
    _, avro_problem = problem_to_avro(problem)
    corr = f"corr-{job_id}"
    env = {
        "job_id": job_id, "idempotency_key": f"key-{job_id}", "request_id": f"req-{job_id}",
        "tenant": tenant, "problem_type": problem.kind, "schema_version": 2,
        "problem": avro_problem, "input_fingerprint": problem.fingerprint(),
        "output_shape": {"kind": "binary", "length": problem.num_variables},
        "num_variables": problem.num_variables, "num_qubits": problem.num_variables,
        "timeout_ms": 20_000, "deadline_at": T0 + timedelta(seconds=20),
        "fallback_policy": "classical_only", "priority": 5, "shot_budget": None, "seed": 1,
        "correlation_id": corr, "tags": {"bench": "sink"}, "created_at": T0,
        "accepted_at": T0 + timedelta(milliseconds=1),
    }  # fmt: skip
    rows: list[Any] = [m.job_row(env)]
    previous = None
    for seq, status in enumerate(("accepted", "routed", "running", "succeeded"), start=1):
        rows.append(
            m.transition_row(
                {
                    "job_id": job_id, "tenant": tenant, "seq": seq, "from_status": previous,
                    "to_status": status, "reason": "", "attempt": None if seq == 1 else 1,
                    "route": None if seq == 1 else "classical",
                    "backend": None if seq == 1 else "exact", "correlation_id": corr,
                    "at": T0 + timedelta(milliseconds=seq),
                }
            )
        )  # fmt: skip
        previous = status
    solution = {"assignment": [0, 1] * 4, "objective": 9.0, "feasible": True, "frequency": None}
    candidates = [
        {**solution, "assignment": [i % 2 for i in range(k, k + 8)], "objective": 9.0 - k}
        for k in range(3)
    ]
    provenance = {
        "route": "classical", "solver": "exact", "backend": "numpy",
        "backend_version": "bench", "sdk_versions": {"numpy": "bench"},
        "settings_json": '{"vectorised": true}', "circuit_depth": None, "circuit_width": None,
        "shots": None, "seed": 1, "optimizer_iterations": None,
        "timings": {"queue_ms": 0.2, "transpile_ms": 0.0, "execute_ms": 0.1,
                    "postprocess_ms": 0.0},
        "cache_hit": None, "cost_units": 0.01,
    }  # fmt: skip
    quality = {
        "proven_optimal": True, "bound": 9.0, "gap": 0.0, "expected_objective": None,
        "confidence": 1.0,
    }  # fmt: skip
    base = {
        "work_id": f"{job_id}:1:classical", "job_id": job_id, "attempt": 1,
        "route": "classical", "tenant": tenant, "error": None, "solution": None,
        "candidates": [], "quality": None, "provenance": None, "correlation_id": corr,
    }  # fmt: skip
    rows.append(m.attempt_row({**base, "status": "started", "produced_at": T0}))
    rows.append(
        m.attempt_row(
            {
                **base, "status": "ok", "solution": solution, "candidates": candidates,
                "quality": quality, "provenance": provenance,
                "produced_at": T0 + timedelta(milliseconds=3),
            }
        )
    )  # fmt: skip
    rows.append(
        m.outcome_rows(
            {
                "job_id": job_id, "tenant": tenant, "status": "succeeded", "reason": "",
                "problem_type": problem.kind, "input_fingerprint": problem.fingerprint(),
                "route": "classical", "solution": solution, "candidates": candidates,
                "quality": quality, "provenance": provenance, "quantum_classical_gap": None,
                "attempts": 1, "correlation_id": corr,
                "completed_at": T0 + timedelta(milliseconds=4),
            }
        )
    )  # fmt: skip
    return rows


def stream(jobs: int, spread: int, tenant: str) -> list[Any]:
    """Every job's rows, stage k of job j next to stage 0 of job ``j + k * spread``."""
    keyed = []
    rng = random.Random(7)
    for j in range(jobs):
        for stage, row in enumerate(job_records(f"bench-{tenant}-{j}", tenant, rng)):
            keyed.append(((j + stage * spread, stage), row))
    return [row for _, row in sorted(keyed, key=lambda kr: kr[0])]


# --- measuring ------------------------------------------------------------------------


def _cpu(pids: Sequence[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            continue
    return total / _TICK


def _server_pids(postmaster: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(postmaster)], capture_output=True, text=True
    ).stdout
    return [postmaster, *(int(p) for p in out.split())]


def run_once(
    store: ResultsStore, rows: Sequence[Any], batch: int, postmaster: int
) -> dict[str, float]:
    with store.pool.connection() as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        backend = int(row[0])
    server = _server_pids(postmaster)
    b0, s0, c0, w0 = _cpu([backend]), _cpu(server), time.process_time(), time.perf_counter()
    for i in range(0, len(rows), batch):
        store.record_batch(rows[i : i + batch])
    w1, c1 = time.perf_counter(), time.process_time()
    b1, s1 = _cpu([backend]), _cpu(_server_pids(postmaster))
    jobs = len(rows) / 8
    return {
        "sink_ms": (c1 - c0) * 1000 / jobs,
        "backend_ms": (b1 - b0) * 1000 / jobs,
        "postgres_ms": (s1 - s0) * 1000 / jobs,
        "wall_ms": (w1 - w0) * 1000 / jobs,
    }


def snapshot(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows without the volatile bookkeeping columns."""
    out = {}
    with psycopg.connect(dsn) as conn:
        for table, key in TABLES.items():
            cur = conn.execute(f"SELECT * FROM {table} ORDER BY {key}")
            names = [d.name for d in cur.description or []]
            keep = [i for i, n in enumerate(names) if n not in VOLATILE]
            out[table] = [tuple(r[i] for i in keep) for r in cur.fetchall()]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per round")
    parser.add_argument("--batch", type=int, default=100, help="records per batch")
    parser.add_argument("--spread", type=int, default=3, help="jobs between two stages")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", default="main", help="git revision of the baseline")
    args = parser.parse_args(argv)

    stores: dict[str, Callable[[Any], ResultsStore]] = {
        f"row by row ({args.baseline})": load_baseline(args.baseline),
        "multi-row (this tree)": ResultsStore,
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in stores}
    with PostgresServer() as pg:
        dsns, opened = {}, {}
        with psycopg.connect(pg.dsn, autocommit=True) as admin:
            for i, name in enumerate(stores):
                admin.execute(f"CREATE DATABASE bench_sink_{i}")
                dsns[name] = pg.dsn_for(f"bench_sink_{i}")
        for name, cls in stores.items():
            migrate(dsns[name])
            opened[name] = cls(make_pool(dsns[name], min_size=1, max_size=1, timeout_s=10))
        print(
            f"{args.jobs} jobs x 8 records per round, batches of {args.batch}, "
            f"spread {args.spread}, {args.rounds} rounds; load {os.getloadavg()[0]:.1f}"
        )
        postmaster = pg.pid
        assert postmaster is not None
        try:
            for r in range(args.rounds):
                rows = stream(args.jobs, args.spread, f"r{r}")
                for name, store in opened.items():
                    results[name].append(run_once(store, rows, args.batch, postmaster))
            same = snapshot(dsns[next(iter(stores))]) == snapshot(dsns[list(stores)[1]])
        finally:
            for store in opened.values():
                store.pool.close()
    print(
        f"{'ms per job (median)':28} {'sink CPU':>9} {'PG backend':>11} {'PG total':>9} {'wall':>7}"
    )
    medians = {}
    for name, runs in results.items():
        med = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
        medians[name] = med
        print(
            f"{name:28} {med['sink_ms']:9.3f} {med['backend_ms']:11.3f} "
            f"{med['postgres_ms']:9.3f} {med['wall_ms']:7.3f}"
        )
    old, new = medians.values()
    print(
        "ratio (old/new)              "
        + " ".join(
            f"{old[k] / new[k]:{w}.1f}x" if new[k] else f"{'-':>{w + 1}}"
            for k, w in (("sink_ms", 8), ("backend_ms", 10), ("postgres_ms", 8), ("wall_ms", 6))
        )
    )
    print(f"same rows stored by both: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
