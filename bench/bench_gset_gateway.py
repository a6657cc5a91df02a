"""Gset MaxCut through Solve on the real gateway: answer quality and latency vs the deadline.

Starts the whole system locally (real Kafka and PostgreSQL, every service as a process,
the gateway), then calls Solve on each Gset graph (public graphs read from
``../shared/bench-data/gset/`` when present; the benchmark stops with a message when
absent) with deadlines of 2 s and 10 s, one call at a time, and reports per call: cut /
best known cut, who answered (pipeline or gateway, which solver), latency at the client
against the deadline and the deadline + margin.

Targets (issue 10): each graph >= 0.99 of its best known cut at 2 s (mean >= 0.995),
>= 0.995 at 10 s, the 10 s answer never worse than the 2 s one, no answer later than
the deadline + 100 ms. The machine may be shared: numbers are then pessimistic.

Usage::

    .venv/bin/python bench/bench_gset_gateway.py               # ~3 min
    .venv/bin/python bench/bench_gset_gateway.py --repeat 2    # each call twice

Prints a table and writes it as markdown (rows as JSON) to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

from bench_gateway import MARGIN_MS, META, gateway_process, problem_msg
from devstack.pipeline import Pipeline, free_port
from devstack.stack import LocalStack
from gset import GSET_DIR, GsetGraph, load_gset
from qbridge.bus import KafkaSettings, ensure_topics
from qbridge.contracts.gen.gateway.v1 import gateway_pb2 as pb
from qbridge.contracts.gen.gateway.v1 import gateway_pb2_grpc as pb_grpc

RESULTS = Path(__file__).resolve().parent / "results"
DEADLINES_MS = (2000, 10_000)


def call(stub: pb_grpc.GatewayStub, g: GsetGraph, deadline_ms: int) -> dict[str, Any]:
    """One Solve call; the row of the table."""
    request = pb.SolveRequest(problem=problem_msg(g.problem), deadline_ms=deadline_ms)
    row: dict[str, Any] = {
        "graph": g.name,
        "nodes": g.problem.num_nodes,
        "deadline_ms": deadline_ms,
    }
    sent = time.monotonic()
    try:
        r: pb.SolveResponse = stub.Solve(request, metadata=META, timeout=deadline_ms / 1000 + 10)
    except grpc.RpcError as exc:
        code = exc.code().name if isinstance(exc, grpc.Call) else "?"
        details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        row.update(
            ok=False, latency_ms=(time.monotonic() - sent) * 1000, error=f"{code}: {details}"
        )
        return row
    row.update(
        ok=True,
        latency_ms=(time.monotonic() - sent) * 1000,
        server_ms=r.elapsed_ms,
        source=pb.AnswerSource.Name(r.source).removeprefix("ANSWER_SOURCE_").lower(),
        solver=r.result.provenance.solver,
        feasible=r.result.solution.feasible,
        ratio=r.result.solution.objective / g.best_known,
    )
    return row


def markdown(rows: list[dict[str, Any]], repeat: int) -> str:
    lines = [
        f"# bench_gset_gateway ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()})",
        "",
        f"Solve on the real gateway (local stack), Gset graphs read from `{GSET_DIR}`; "
        f"one call at a time, {repeat} call(s) per graph and deadline; ratio = cut / best "
        f"known cut; latency at the client (margin {MARGIN_MS:.0f} ms).",
        "",
        "| graph | nodes | deadline | ratio | latency ms | source | solver |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if not r["ok"]:
            lines.append(
                f"| {r['graph']} | {r['nodes']} | {r['deadline_ms']} ms | error | "
                f"{r['latency_ms']:.0f} | {r['error']} | |"
            )
            continue
        lines.append(
            f"| {r['graph']} | {r['nodes']} | {r['deadline_ms']} ms | {r['ratio']:.4f} | "
            f"{r['latency_ms']:.0f} | {r['source']} | {r['solver']} |"
        )
    lines.append("")
    for d in DEADLINES_MS:
        ok = [r for r in rows if r["deadline_ms"] == d and r["ok"]]
        if not ok:
            continue
        ratios = [r["ratio"] for r in ok]
        late = sum(r["latency_ms"] > d + MARGIN_MS for r in ok)
        lines.append(
            f"- deadline {d} ms: mean ratio {statistics.fmean(ratios):.4f}, min "
            f"{min(ratios):.4f}; latency max {max(r['latency_ms'] for r in ok):.0f} ms; "
            f"{late} of {len(ok)} later than deadline + {MARGIN_MS:.0f} ms"
        )
    worse = [
        f"{a['graph']} ({a['ratio']:.4f} at 2 s, {b['ratio']:.4f} at 10 s)"
        for a in rows
        for b in rows
        if a["ok"]
        and b["ok"]
        and a["graph"] == b["graph"]
        and a.get("round") == b.get("round")
        and a["deadline_ms"] == DEADLINES_MS[0]
        and b["deadline_ms"] == DEADLINES_MS[1]
        and b["ratio"] < a["ratio"]
    ]
    lines.append(f"- 10 s answer worse than the 2 s one: {', '.join(worse) or 'never'}")
    errors = [r for r in rows if not r["ok"]]
    lines.append(f"- errors: {len(errors)}")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="calls per graph and deadline")
    parser.add_argument("--logs", type=Path, default=None, help="keep the services' logs here")
    args = parser.parse_args()
    graphs = load_gset()
    if not graphs:
        print(f"Gset graphs not found in {GSET_DIR}: nothing to measure.")
        return
    print(f"Gset graphs read from {GSET_DIR}: {', '.join(g.name for g in graphs)}")
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with LocalStack() as stack, tempfile.TemporaryDirectory() as tmp:
        logs = args.logs or Path(tmp)
        logs.mkdir(parents=True, exist_ok=True)
        ensure_topics(KafkaSettings(bootstrap_servers=stack.bootstrap_servers))
        pipeline = Pipeline(stack.bootstrap_servers, stack.dsn, logs)
        port = free_port()
        gateway = gateway_process(stack, port, logs)
        try:
            pipeline.start()
            gateway.start()
            gateway.wait_ready(120)
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            grpc.channel_ready_future(channel).result(timeout=10)
            stub = pb_grpc.GatewayStub(channel)
            for k in range(args.repeat):
                for g in graphs:
                    for d in DEADLINES_MS:
                        row = call(stub, g, d)
                        row["round"] = k
                        rows.append(row)
                        shown = f"{row['ratio']:.4f} via {row['source']}/{row['solver']}"
                        print(
                            f"{g.name:<4} {d:>6} ms: "
                            + (shown if row["ok"] else row["error"])
                            + f" in {row['latency_ms']:.0f} ms",
                            flush=True,
                        )
            channel.close()
        finally:
            gateway.stop()
            pipeline.stop()
    md = markdown(rows, args.repeat)
    print("\n" + md)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = RESULTS / f"bench_gset_gateway-{stamp}"
    base.with_suffix(".md").write_text(md)
    report = {
        "benchmark": "bench_gset_gateway",
        "created_at": datetime.now(UTC).isoformat(),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "deadlines_ms": DEADLINES_MS,
        "margin_ms": MARGIN_MS,
        "rows": rows,
        "elapsed_s": time.perf_counter() - started,
    }
    base.with_suffix(".json").write_text(json.dumps(report, indent=2))
    print(f"wrote {base}.md and .json ({report['elapsed_s']:.0f} s)")


if __name__ == "__main__":
    main()
