"""Benchmark of Solve admission under concurrent load, from a foreign client.

Starts the whole system locally (real Kafka and PostgreSQL, every service as a process,
the gateway), then for each concurrency level (4, 8, 16, 32 callers) runs clients that
know nothing of qbridge and load ``schemas/proto/qbridge/gateway/v1/gateway.proto`` at run
time (no generated stubs):

* ``--client python`` (default): plain ``grpcio`` in *separate client processes* of at
  most 4 callers each (so callers do not queue on one client's GIL);
* ``--client node``: one Node process, ``@grpc/grpc-js`` + ``@grpc/proto-loader``
  (``bench/overload_client.mjs``; how the issue's reporter measured). The packages are
  installed with ``npm`` into ``.cache/bench-node/`` (git-ignored) on first use;
* ``--client both``: Python, then Node, at each level.

Each caller loops over 64 requests built before the clock runs: a random 12-44-node
MaxCut, a deadline of 200 ms or 1 s (the gRPC deadline is 2 s longer, so lateness is
measured rather than cut off), one Solve; after a RESOURCE_EXHAUSTED it waits as the
``retry-after-ms`` trailer says (jittered, <= 1 s). Before the first level 4 callers run
for 3 s (``--no-warm-up``: the first level meets a cold gateway).

Reported per level, at the client:

* admitted calls: lateness (latency - deadline) p50 / p99 / max, share later than
  deadline + 10 ms;
* refused calls (RESOURCE_EXHAUSTED): count and latency p50 / p95 / p99 (target < 5 ms);
* other errors by status code;
* the gateway's own lateness (the answer's ``elapsed_ms``, arrival to answer, minus the
  deadline) p99, and the time outside the gateway: client latency minus ``elapsed_ms``
  (transport, gRPC outside the handlers, and the client) p50 / p99;
* the machine: 1-minute load average and how late this driver's idle thread wakes from
  5 ms sleeps (p50 / p99). On a shared machine that, not the gateway, decides the tails.

Usage::

    .venv/bin/python bench/bench_gateway_overload.py            # ~3 min
    .venv/bin/python bench/bench_gateway_overload.py --quick    # ~1.5 min
    .venv/bin/python bench/bench_gateway_overload.py --quick --client both
    .venv/bin/python bench/bench_gateway_overload.py --quick --levels 16 --no-warm-up

Writes JSON to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
PROTO_ROOT = ROOT / "schemas" / "proto"
KEY = "overload-key"
TARGET_LATE_MS = 10.0
TARGET_REFUSAL_MS = 5.0


# --- the foreign client (a separate process; grpcio only) ---------------------------------


def client(port: int, concurrency: int, seconds: float, seed: int) -> None:
    """Run ``concurrency`` closed-loop Solve callers; print one JSON line per call."""
    import grpc

    # The callers share this process's GIL: a thread whose answer arrived must not wait
    # the default 5 ms for another caller's Python work, or that wait would be measured
    # as the gateway's latency.
    sys.setswitchinterval(0.0002)

    sys.path.insert(0, str(PROTO_ROOT))
    protos, services = grpc.protos_and_services("qbridge/gateway/v1/gateway.proto")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    grpc.channel_ready_future(channel).result(timeout=10)
    stub = services.GatewayStub(channel)
    meta = (("x-api-key", KEY),)
    lock = threading.Lock()
    out: list[dict[str, Any]] = []
    stop_at = time.monotonic() + seconds

    def request(rng: random.Random) -> Any:
        n = rng.randint(12, 44)
        pairs = ((rng.randrange(n), rng.randrange(n)) for _ in range(3 * n))
        edges = {(min(u, v), max(u, v)) for u, v in pairs if u != v}
        problem = protos.Problem(
            maxcut=protos.MaxCut(
                num_nodes=n,
                edges=[protos.WeightedEdge(u=u, v=v, weight=1.0) for u, v in sorted(edges)],
            )
        )
        return protos.SolveRequest(problem=problem, deadline_ms=rng.choice((200, 1000)))

    def caller(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        # Built before the clock runs, so no caller's timing includes another's building.
        requests = [request(rng) for _ in range(64)]
        while time.monotonic() < stop_at:
            req = rng.choice(requests)
            deadline = req.deadline_ms
            t0 = time.perf_counter()
            code = "OK"
            retry_ms = 0
            server_ms = None
            try:
                answer = stub.Solve(req, metadata=meta, timeout=deadline / 1000 + 2)
                server_ms = answer.elapsed_ms
            except grpc.RpcError as err:
                code = err.code().name
                trailers = dict(err.trailing_metadata() or ())  # type: ignore[attr-defined]
                retry_ms = int(trailers.get("retry-after-ms", 0))
            ms = (time.perf_counter() - t0) * 1000
            with lock:
                out.append(
                    {
                        "deadline_ms": deadline,
                        "latency_ms": ms,
                        "code": code,
                        "server_ms": server_ms,
                    }
                )
            if code == "RESOURCE_EXHAUSTED":
                # A well-behaved client honours the hint (with jitter, at most 1 s).
                time.sleep(min(1.0, retry_ms / 1000) * rng.uniform(0.5, 1.0))

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for row in out:
        print(json.dumps(row))


# --- the driver ---------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def summarize(concurrency: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rows if r["code"] == "OK"]
    late = [r["latency_ms"] - r["deadline_ms"] for r in ok]
    refused = [r["latency_ms"] for r in rows if r["code"] == "RESOURCE_EXHAUSTED"]
    # Client latency minus the gateway's own arrival-to-answer time: transport, gRPC
    # outside the handler, and the client's own scheduling.
    outside = [r["latency_ms"] - r["server_ms"] for r in ok if r.get("server_ms") is not None]
    # The gateway's own view: arrival to answer (the answer's elapsed_ms) minus the deadline.
    inside = [r["server_ms"] - r["deadline_ms"] for r in ok if r.get("server_ms") is not None]
    return {
        "concurrency": concurrency,
        "calls": len(rows),
        "admitted": len(ok),
        "lateness_p50_ms": pct(late, 0.5),
        "lateness_p99_ms": pct(late, 0.99),
        "lateness_max_ms": max(late) if late else float("nan"),
        "gateway_lateness_p99_ms": pct(inside, 0.99),
        "outside_gateway_p50_ms": pct(outside, 0.5),
        "outside_gateway_p99_ms": pct(outside, 0.99),
        "late_beyond_target_share": sum(x > TARGET_LATE_MS for x in late) / max(1, len(late)),
        "refused": len(refused),
        "refusal_p50_ms": pct(refused, 0.5),
        "refusal_p95_ms": pct(refused, 0.95),
        "refusal_p99_ms": pct(refused, 0.99),
        "other_errors": dict(
            Counter(r["code"] for r in rows if r["code"] not in ("OK", "RESOURCE_EXHAUSTED"))
        ),
    }


CALLERS_PER_CLIENT = 4
"""Callers per client process (more would queue on the client's own GIL)."""


NODE_DIR = ROOT / ".cache" / "bench-node"
"""Where the Node client's packages are installed (git-ignored; ``npm install`` on first use)."""
NODE_PACKAGES = ("@grpc/grpc-js@1", "@grpc/proto-loader@0.7")
NODE_CLIENT = Path(__file__).resolve().parent / "overload_client.mjs"


def ensure_node_client() -> None:
    """Install grpc-js and proto-loader into :data:`NODE_DIR` unless already there."""
    if all((NODE_DIR / "node_modules" / "@grpc" / n).is_dir() for n in ("grpc-js", "proto-loader")):
        return
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(NODE_DIR), *NODE_PACKAGES],
        check=True,
    )


def client_command(kind: str, port: int, size: int, seconds: float, seed: int) -> list[str]:
    """The command line of one client process of ``size`` callers."""
    if kind == "node":
        return [
            "node",
            str(NODE_CLIENT),
            str(PROTO_ROOT),
            str(port),
            str(size),
            str(seconds),
            str(seed),
            KEY,
        ]
    return [
        sys.executable,
        __file__,
        "--client-process",
        f"--port={port}",
        f"--concurrency={size}",
        f"--seconds={seconds}",
        f"--seed={seed}",
    ]


def run_level(
    port: int, concurrency: int, seconds: float, kind: str = "python"
) -> list[dict[str, Any]]:
    """``concurrency`` callers: Python processes of at most ``CALLERS_PER_CLIENT`` each, or
    one Node process (one event loop, as grpc-js is used)."""
    if kind == "node":
        sizes = [concurrency]
    else:
        sizes = [CALLERS_PER_CLIENT] * (concurrency // CALLERS_PER_CLIENT)
        if concurrency % CALLERS_PER_CLIENT:
            sizes.append(concurrency % CALLERS_PER_CLIENT)
    env = {**os.environ, "NODE_PATH": str(NODE_DIR / "node_modules")}
    procs = [
        subprocess.Popen(
            client_command(kind, port, size, seconds, concurrency * 100 + i),
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i, size in enumerate(sizes)
    ]
    rows: list[dict[str, Any]] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 60)
        if proc.returncode != 0:
            raise RuntimeError(f"{kind} client exited with {proc.returncode}")
        rows += [json.loads(line) for line in out.splitlines() if line.strip()]
    return rows


class WakeProbe:
    """How late a thread of this (idle) driver wakes from 5 ms sleeps: the machine's noise.

    The clients and the gateway wait for a core the same way; a p99 of tens of ms here
    means other work on the machine, not the gateway, decides the tail.
    """

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wake-probe", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.perf_counter()
            time.sleep(0.005)
            self.delays.append((time.perf_counter() - t0 - 0.005) * 1000)

    def __enter__(self) -> WakeProbe:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter levels")
    parser.add_argument(
        "--client",
        choices=("python", "node", "both"),
        default="python",
        help="foreign client: grpcio processes, Node grpc-js, or both at each level",
    )
    parser.add_argument(
        "--no-warm-up", action="store_true", help="start the first level on a cold gateway"
    )
    parser.add_argument("--logs", default="", help="keep the services' logs in this directory")
    parser.add_argument("--client-process", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=4, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=10.0, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--levels", default="4,8,16,32", help="concurrency levels")
    parser.add_argument(
        "--gateway-env", default="{}", help="extra gateway environment (JSON object)"
    )
    args = parser.parse_args()
    if args.client_process:
        client(args.port, args.concurrency, args.seconds, seed=args.seed)
        return

    from devstack.pipeline import Pipeline, ServiceProcess, free_port
    from devstack.stack import LocalStack
    from qbridge.bus import KafkaSettings, ensure_topics

    levels = [int(x) for x in args.levels.split(",")]
    kinds = ["python", "node"] if args.client == "both" else [args.client]
    if "node" in kinds:
        ensure_node_client()
    seconds = 12.0 if args.quick else 30.0
    started = time.perf_counter()
    summaries: list[dict[str, Any]] = []
    with LocalStack() as stack, tempfile.TemporaryDirectory() as tmp:
        logs = args.logs or tmp
        ensure_topics(KafkaSettings(bootstrap_servers=stack.bootstrap_servers))
        pipeline = Pipeline(stack.bootstrap_servers, stack.dsn, Path(logs))
        port = free_port()
        gateway = ServiceProcess(
            "gateway",
            "gateway",
            {
                "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap_servers,
                "DATABASE_URL": stack.dsn,
                "QBRIDGE_GRPC_HOST": "127.0.0.1",
                "QBRIDGE_GRPC_PORT": str(port),
                "QBRIDGE_API_KEYS": json.dumps({KEY: "overload"}),
                "QBRIDGE_TENANT_MAX_INFLIGHT": "0",
                "QBRIDGE_TENANT_RATES": "{}",  # measure capacity, not the tenant's rate
                **json.loads(args.gateway_env),
            },
            Path(logs),
        )
        try:
            pipeline.start()
            gateway.start()
            gateway.wait_ready(120)
            pid = gateway.proc.pid if gateway.proc is not None else "?"
            print(f"gateway pid {pid}, logs in {logs}", flush=True)
            if not args.no_warm_up:
                run_level(port, 4, 3.0)  # warm-up (JIT of the local solvers, topic metadata)
            for c, kind in ((c, kind) for c in levels for kind in kinds):
                with WakeProbe() as probe:
                    rows = run_level(port, c, seconds, kind)
                s = {
                    "client": kind,
                    **summarize(c, rows),
                    "wake_delay_p50_ms": pct(probe.delays, 0.5),
                    "wake_delay_p99_ms": pct(probe.delays, 0.99),
                    "load_average_1m": os.getloadavg()[0],
                }
                summaries.append(s)
                print(
                    f"{kind:>6} {c:>3} callers: {s['calls']:>5} calls, "
                    f"{s['admitted']:>5} admitted: "
                    f"lateness p50 {s['lateness_p50_ms']:7.1f} p99 {s['lateness_p99_ms']:7.1f} "
                    f"max {s['lateness_max_ms']:7.1f} ms (>{TARGET_LATE_MS:.0f} ms: "
                    f"{s['late_beyond_target_share']:.1%}); refused {s['refused']:>5}: "
                    f"p50 {s['refusal_p50_ms']:5.1f} p95 {s['refusal_p95_ms']:5.1f} "
                    f"p99 {s['refusal_p99_ms']:5.1f} ms; "
                    f"other {s['other_errors'] or '-'}; gateway-side lateness p99 "
                    f"{s['gateway_lateness_p99_ms']:.1f} ms; outside the gateway p50 "
                    f"{s['outside_gateway_p50_ms']:.1f} p99 {s['outside_gateway_p99_ms']:.1f} ms; "
                    f"machine: load {s['load_average_1m']:.1f}, wake-up delay p50 "
                    f"{s['wake_delay_p50_ms']:.1f} p99 {s['wake_delay_p99_ms']:.1f} ms",
                    flush=True,
                )
        finally:
            gateway.stop()
            pipeline.stop()
    report = {
        "benchmark": "bench_gateway_overload",
        "created_at": datetime.now(UTC).isoformat(),
        "quick": args.quick,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "clients": {
            "python": f"separate processes of at most {CALLERS_PER_CLIENT} callers, plain grpcio"
            " loading gateway.proto (no generated stubs)",
            "node": "one Node process, @grpc/grpc-js + @grpc/proto-loader loading gateway.proto",
        },
        "warm_up": not args.no_warm_up,
        "load_average_at_end": os.getloadavg(),
        "seconds_per_level": seconds,
        "targets": {"lateness_p99_ms": TARGET_LATE_MS, "refusal_p99_ms": TARGET_REFUSAL_MS},
        "summary": summaries,
        "elapsed_s": time.perf_counter() - started,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"bench_gateway_overload-{'quick-' if args.quick else ''}{stamp}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out} ({report['elapsed_s']:.0f} s)")


if __name__ == "__main__":
    main()
