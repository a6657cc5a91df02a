"""Benchmark of the gRPC gateway's Solve under overload: latency against the deadline.

Starts the whole system locally (real Kafka and PostgreSQL, every service as a process,
the gateway), measures what the quantum path alone can serve (QAOA jobs per second),
then drives Solve open-loop at a multiple of that rate with a mix of deadlines, and
reports per deadline:

* latency percentiles (p50, p90, p99, max) as measured by the client, and the share of
  answers later than the deadline and later than deadline + the promised 100 ms margin;
* who answered: the pipeline's quantum route, the pipeline's classical route (fallback,
  lag degradation, the orchestrator's rescue), or the gateway's own classical answer;
* answer quality: objective / proven optimum (CP-SAT, computed afterwards);
* errors by gRPC status code (RESOURCE_EXHAUSTED = admission control).

Usage::

    .venv/bin/python bench/bench_gateway.py            # ~3 min
    .venv/bin/python bench/bench_gateway.py --quick    # ~1 min

Prints tables and writes JSON to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import tempfile
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

from devstack.pipeline import Pipeline, ServiceProcess, free_port
from devstack.stack import LocalStack
from qbridge.bus import KafkaSettings, ensure_topics
from qbridge.contracts.gen.gateway.v1 import gateway_pb2 as pb
from qbridge.contracts.gen.gateway.v1 import gateway_pb2_grpc as pb_grpc
from qbridge.problems.maxcut import MaxCut
from qbridge.samples import regular_maxcut
from qbridge.solvers.base import Budget
from qbridge.solvers.classical import CpSatSolver

RESULTS = Path(__file__).resolve().parent / "results"
MARGIN_MS = 100.0
KEY = "bench-key"
META = (("x-api-key", KEY),)


def problem_msg(p: MaxCut) -> pb.Problem:
    edges = [pb.WeightedEdge(u=u, v=v, weight=w) for u, v, w in p.to_dict()["edges"]]
    return pb.Problem(maxcut=pb.MaxCut(num_nodes=p.num_nodes, edges=edges))


def gateway_process(stack: LocalStack, port: int, logs: Path, **env: str) -> ServiceProcess:
    """The gateway as a process on ``port`` against the local stack (API key :data:`KEY`)."""
    return ServiceProcess(
        "gateway",
        "gateway",
        {
            "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap_servers,
            "DATABASE_URL": stack.dsn,
            "QBRIDGE_GRPC_HOST": "127.0.0.1",
            "QBRIDGE_GRPC_PORT": str(port),
            "QBRIDGE_API_KEYS": json.dumps({KEY: "bench"}),
            **env,
        },
        logs,
    )


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def quantum_capacity(stub: pb_grpc.GatewayStub, problems: list[MaxCut], seconds: float) -> float:
    """Quantum-routed jobs per second when the executor is kept busy (sequential Solves)."""
    done = 0
    started = time.monotonic()
    i = 0
    while time.monotonic() - started < seconds:
        r = stub.Solve(
            pb.SolveRequest(
                problem=problem_msg(problems[i % len(problems)]),
                deadline_ms=20_000,
                options=pb.JobOptions(fallback_policy="quantum_only"),
            ),
            metadata=META,
            timeout=30,
        )
        i += 1
        if r.result.route == pb.ROUTE_QUANTUM and r.source == pb.ANSWER_SOURCE_PIPELINE:
            done += 1
    return done / (time.monotonic() - started)


def drive(
    stub: pb_grpc.GatewayStub,
    problems: list[MaxCut],
    rate: float,
    seconds: float,
    deadlines: list[int],
) -> list[dict[str, Any]]:
    """Open loop: one Solve every 1/rate s (deadline round-robin); returns one row per call."""
    rows: list[dict[str, Any]] = []
    lock = threading.Lock()
    pending = threading.Semaphore(0)
    n = int(rate * seconds)
    start = time.monotonic()

    def done(
        fut: grpc.Future, sent: float, deadline: int, idx: int
    ) -> None:  # runs on a gRPC thread
        elapsed = (time.monotonic() - sent) * 1000
        row: dict[str, Any] = {"deadline_ms": deadline, "latency_ms": elapsed, "problem": idx}
        try:
            r: pb.SolveResponse = fut.result()
            row.update(
                ok=True,
                source=pb.AnswerSource.Name(r.source).removeprefix("ANSWER_SOURCE_").lower(),
                route=pb.Route.Name(r.result.route).removeprefix("ROUTE_").lower(),
                objective=r.result.solution.objective,
                feasible=r.result.solution.feasible,
                solver=r.result.provenance.solver,
                server_ms=r.elapsed_ms,
            )
        except grpc.RpcError as exc:
            row.update(ok=False, code=exc.code().name if isinstance(exc, grpc.Call) else "?")
        with lock:
            rows.append(row)
        pending.release()

    for k in range(n):
        target = start + k / rate
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        idx = k % len(problems)
        deadline = deadlines[k % len(deadlines)]
        sent = time.monotonic()
        fut = stub.Solve.future(
            pb.SolveRequest(problem=problem_msg(problems[idx]), deadline_ms=deadline),
            metadata=META,
            timeout=deadline / 1000 + 10,
        )
        fut.add_done_callback(lambda f, s=sent, d=deadline, i=idx: done(f, s, d, i))
    for _ in range(n):
        pending.acquire(timeout=120)
    return rows


def summarize(rows: list[dict[str, Any]], optimum: dict[int, float]) -> list[dict[str, Any]]:
    out = []
    by_deadline: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_deadline[r["deadline_ms"]].append(r)
    for d in sorted(by_deadline):
        group = by_deadline[d]
        ok = [r for r in group if r["ok"]]
        lat = [r["latency_ms"] for r in ok]
        who = Counter(
            "quantum" if r["route"] == "quantum" else f"{r['source']}-classical" for r in ok
        )
        ratios = [r["objective"] / optimum[r["problem"]] for r in ok if r["feasible"]]
        out.append(
            {
                "deadline_ms": d,
                "calls": len(group),
                "answered": len(ok),
                "p50_ms": pct(lat, 0.5),
                "p90_ms": pct(lat, 0.9),
                "p99_ms": pct(lat, 0.99),
                "max_ms": max(lat) if lat else float("nan"),
                "late_share": sum(x > d for x in lat) / max(1, len(lat)),
                "late_beyond_margin_share": sum(x > d + MARGIN_MS for x in lat) / max(1, len(lat)),
                "quantum_share": who["quantum"] / max(1, len(ok)),
                "pipeline_classical_share": who["pipeline-classical"] / max(1, len(ok)),
                "gateway_classical_share": who["gateway-classical"] / max(1, len(ok)),
                "quality_mean": statistics.fmean(ratios) if ratios else float("nan"),
                "quality_min": min(ratios) if ratios else float("nan"),
                "errors": dict(Counter(r["code"] for r in group if not r["ok"])),
            }
        )
    return out


def print_table(title: str, summary: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(
        f"{'deadline':>9} {'calls':>5} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7} "
        f"{'late':>6} {'>+100':>6} {'quantum':>8} {'pipe-cl':>8} {'gw-cl':>6} "
        f"{'quality':>8} errors"
    )
    for s in summary:
        print(
            f"{s['deadline_ms']:>7}ms {s['calls']:>5} {s['p50_ms']:>7.0f} {s['p90_ms']:>7.0f} "
            f"{s['p99_ms']:>7.0f} {s['max_ms']:>7.0f} {s['late_share']:>6.1%} "
            f"{s['late_beyond_margin_share']:>6.1%} {s['quantum_share']:>8.1%} "
            f"{s['pipeline_classical_share']:>8.1%} {s['gateway_classical_share']:>6.1%} "
            f"{s['quality_mean']:>8.3f} {s['errors'] or ''}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--overload", type=float, default=4.0, help="rate / quantum capacity")
    args = parser.parse_args()
    seconds = 15.0 if args.quick else 45.0
    deadlines = [100, 500, 1000, 3000]
    rng = random.Random(11)
    problems = [regular_maxcut(10, rng) for _ in range(40)]
    started = time.perf_counter()
    print("solving the instances exactly (CP-SAT) for the quality column...")
    solver = CpSatSolver()
    optimum = {
        i: solver.solve(p, Budget(time_limit_s=10, seed=0)).best.objective
        for i, p in enumerate(problems)
    }
    with LocalStack() as stack, tempfile.TemporaryDirectory() as logs:
        ensure_topics(KafkaSettings(bootstrap_servers=stack.bootstrap_servers))
        pipeline = Pipeline(stack.bootstrap_servers, stack.dsn, Path(logs))
        port = free_port()
        gateway = gateway_process(stack, port, Path(logs), QBRIDGE_TENANT_MAX_INFLIGHT="0")
        try:
            pipeline.start()
            gateway.start()
            gateway.wait_ready(120)
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            grpc.channel_ready_future(channel).result(timeout=10)
            stub = pb_grpc.GatewayStub(channel)
            cap_s = 8.0 if args.quick else 20.0
            capacity = quantum_capacity(stub, problems, cap_s)
            rate = max(2.0, args.overload * capacity)
            print(
                f"quantum path capacity: {capacity:.2f} jobs/s; driving Solve at {rate:.1f}/s "
                f"({args.overload:.0f}x) for {seconds:.0f} s, deadlines {deadlines} ms"
            )
            time.sleep(3)  # let the capacity probe's queue drain
            rows = drive(stub, problems, rate, seconds, deadlines)
            summary = summarize(rows, optimum)
            print_table(
                f"Solve at {rate:.1f}/s = {args.overload:.0f}x the quantum capacity "
                f"(latency in ms at the client; quality = objective / optimum)",
                summary,
            )
            channel.close()
        finally:
            gateway.stop()
            pipeline.stop()
    ok = [r for r in rows if r["ok"]]
    totals = {
        "calls": len(rows),
        "errors": len(rows) - len(ok),
        "late_beyond_margin": sum(r["latency_ms"] > r["deadline_ms"] + MARGIN_MS for r in ok),
        "quantum_answers": sum(r["route"] == "quantum" for r in ok),
        "gateway_answers": sum(r["source"] == "gateway" for r in ok),
        "infeasible": sum(not r["feasible"] for r in ok),
    }
    print(f"\ntotals: {totals}")
    report = {
        "benchmark": "bench_gateway",
        "created_at": datetime.now(UTC).isoformat(),
        "quick": args.quick,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "quantum_capacity_per_s": capacity,
        "rate_per_s": rate,
        "seconds": seconds,
        "deadlines_ms": deadlines,
        "margin_ms": MARGIN_MS,
        "summary": summary,
        "totals": totals,
        "elapsed_s": time.perf_counter() - started,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"bench_gateway-{'quick-' if args.quick else ''}{stamp}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out} ({report['elapsed_s']:.0f} s)")


if __name__ == "__main__":
    main()
