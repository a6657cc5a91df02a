"""End-to-end pipeline benchmark: throughput and latency of small classical jobs (issue 9).

Starts a real local Kafka + PostgreSQL and every service as a process (like `make run`),
then publishes jobs the way an upstream system would: a PLAIN confluent-kafka producer
encoding ``qbridge.ProblemRequest`` with fastavro from ``schemas/registry.json`` and the
Confluent framing (magic byte 0, 4-byte schema id, body) -- none of the project's
helpers on the publishing path. Every job is an 8-node MaxCut with ``classical_only``.
Final outcomes are read with a plain consumer and decoded with fastavro.

Measured, in one run:

* latency at a low offered load (``--latency-rate``, default 20 jobs/s): event -> final
  outcome p50/p90/p99 (publish time to the outcome's arrival at the bench's consumer);
* a curve: for each offered load (20 ... 1,000 jobs/s, ``--step-s`` seconds each) the
  achieved rate, latency p50/p99 and the peak consumer lag (sum over the pipeline's
  groups; committed offsets, so up to one auto-commit interval, 1 s, is included);
* sustained: ``--sustained-rate`` offered for ``--sustained-s`` seconds (default 1,000 for
  60 s): jobs final within the window per second, total time until all are final, lost
  jobs, and the stored solutions counted in PostgreSQL (exactly one per job).

The machine is shared (2 cores, other processes): the 1-minute load average is printed
with each phase so numbers can be judged.

Usage: python bench/bench_pipeline.py [--quick]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import struct
import threading
import time
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fastavro
import psycopg
from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from devstack.pipeline import Pipeline
from devstack.stack import LocalStack
from qbridge import topics
from qbridge.bus import KafkaSettings, LagReader, ensure_topics

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
REQUESTS = "qbridge.problem-requests.v1"
OUTCOMES = "qbridge.job-outcomes.v1"
GROUPS = (
    topics.INTAKE_GROUP,
    topics.ORCHESTRATOR_GROUP,
    topics.CLASSICAL_FALLBACK_GROUP,
    topics.RESULTS_SINK_GROUP,
)


# --- plain Avro with the Confluent framing ------------------------------------------------


class Registry:
    """Schemas by id and the latest id per subject, straight from schemas/registry.json."""

    def __init__(self, path: Path) -> None:
        subjects = json.loads(path.read_text())["subjects"]
        self.by_id: dict[int, Any] = {}
        self.latest: dict[str, int] = {}
        for subject, versions in subjects.items():
            for v in versions:
                self.by_id[v["id"]] = fastavro.parse_schema(v["schema"])
            self.latest[subject] = max(versions, key=lambda v: v["version"])["id"]

    def encode(self, subject: str, record: dict[str, Any]) -> bytes:
        schema_id = self.latest[subject]
        buf = io.BytesIO()
        buf.write(b"\x00" + struct.pack(">I", schema_id))
        fastavro.schemaless_writer(buf, self.by_id[schema_id], record)
        return buf.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        if data[:1] != b"\x00":
            raise ValueError("not Confluent-framed")
        (schema_id,) = struct.unpack(">I", data[1:5])
        schema = self.by_id[schema_id]
        out: dict[str, Any] = fastavro.schemaless_reader(io.BytesIO(data[5:]), schema, schema)  # type: ignore[assignment]
        return out


def maxcut_8(rng: random.Random) -> dict[str, Any]:
    """A random 3-regular-ish 8-node MaxCut (ring plus chords), weights 1..3."""
    edges = {(i, (i + 1) % 8) for i in range(8)} | {(i, i + 4) for i in range(4)}
    return {
        "num_nodes": 8,
        "edges": [{"u": u, "v": v, "weight": float(rng.randint(1, 3))} for u, v in sorted(edges)],
    }


def request(rng: random.Random, tenant: str, corr: str) -> dict[str, Any]:
    return {
        "request_id": corr,
        "idempotency_key": corr,  # distinct jobs (the same problem would be deduplicated)
        "tenant": tenant,
        "problem_type": "maxcut",
        "problem": ("qbridge.MaxCutProblem", maxcut_8(rng)),
        "timeout_ms": 900_000,  # a queued backlog must not expire: latency is what we measure
        "fallback_policy": "classical_only",
        "priority": 5,
        "shot_budget": None,
        "seed": None,
        "correlation_id": corr,
        "tags": {"source": "bench"},
        "created_at": int(time.time() * 1000),
    }


# --- publisher, follower, lag sampler -------------------------------------------------------


class Follower:
    """Consumes final outcomes from the end of the topic; records arrival time by correlation."""

    def __init__(self, bootstrap: str, registry: Registry) -> None:
        self.registry = registry
        self.seen: dict[str, tuple[float, str]] = {}
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._c = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
            }
        )
        parts = self._c.list_topics(OUTCOMES, timeout=10).topics[OUTCOMES].partitions
        self._c.assign([TopicPartition(OUTCOMES, p, OFFSET_END) for p in parts])
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            # poll() returns with the first message; consume(500, 0.05) would hold a lone
            # outcome for the whole 50 ms and add it to every measured latency.
            first = self._c.poll(0.05)
            batch = [first, *self._c.consume(499, timeout=0)] if first is not None else []
            for m in batch:
                if m.error() is not None:
                    continue
                now = time.perf_counter()
                v = self.registry.decode(m.value() or b"")
                with self.lock:
                    self.seen.setdefault(str(v["correlation_id"]), (now, str(v["status"])))

    def count(self, corrs: Sequence[str]) -> int:
        with self.lock:
            return sum(1 for c in corrs if c in self.seen)

    def wait(self, corrs: Sequence[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(corrs) == len(corrs):
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self._stop.set()
        self._t.join()
        self._c.close()


class LagSampler:
    """Samples the summed committed lag of the pipeline's consumer groups."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.readers = [(g, LagReader(settings, g.name)) for g in GROUPS]
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            total = 0
            for g, r in self.readers:
                try:
                    total += sum(p.lag for p in r.read(g.topics, timeout=5))
                except Exception:  # a broker hiccup: skip this sample
                    continue
            self.peak = max(self.peak, total)

    def reset(self) -> int:
        peak, self.peak = self.peak, 0
        return peak

    def close(self) -> None:
        self._stop.set()
        self._t.join()
        for _, r in self.readers:
            r.close()


class Publisher:
    """Publishes requests at a fixed rate with a plain producer."""

    def __init__(self, bootstrap: str, registry: Registry, tenant: str) -> None:
        self.registry = registry
        self.tenant = tenant
        self.rng = random.Random(1)
        self.sent_at: dict[str, float] = {}
        self._p = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 1,
                "compression.type": "lz4",
            }
        )

    def run(self, rate: float, seconds: float) -> list[str]:
        """Publish ``rate`` jobs/s for ``seconds``; returns the correlation ids."""
        n = max(1, round(rate * seconds))
        corrs = []
        start = time.perf_counter()
        for i in range(n):
            due = start + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            corr = f"b-{uuid.uuid4().hex[:16]}"
            value = self.registry.encode(
                "qbridge.ProblemRequest", request(self.rng, self.tenant, corr)
            )
            self.sent_at[corr] = time.perf_counter()
            while True:
                try:
                    self._p.produce(REQUESTS, value=value, key=f"{self.tenant}:{corr}")
                    break
                except BufferError:
                    self._p.poll(0.01)
            self._p.poll(0)
            corrs.append(corr)
        self._p.flush(30)
        return corrs


# --- phases -----------------------------------------------------------------------------


_TICK = os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (PostgreSQL's backends, a service's workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU time (user + system) used so far by each named process tree."""
    out = {}
    for name, pid in pids.items():
        total = 0
        for p in _tree(pid):
            try:
                with open(f"/proc/{p}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
            except OSError:
                continue
        out[name] = total / _TICK
    return out


def pct(values: Sequence[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))] if s else float("nan")


def load_avg() -> float:
    return round(os.getloadavg()[0], 1)


def step(
    pub: Publisher,
    fol: Follower,
    lag: LagSampler,
    rate: float,
    seconds: float,
    drain_s: float,
) -> dict[str, Any]:
    """Offer ``rate`` for ``seconds``, wait for the jobs, summarize."""
    lag.reset()
    t0 = time.perf_counter()
    corrs = pub.run(rate, seconds)
    published = time.perf_counter()
    all_final = fol.wait(corrs, drain_s)
    with fol.lock:
        done = {c: fol.seen[c] for c in corrs if c in fol.seen}
    lat = [(done[c][0] - pub.sent_at[c]) * 1000 for c in done]
    in_window = sum(1 for t, _ in done.values() if t <= published)
    last = max((t for t, _ in done.values()), default=published)
    statuses: dict[str, int] = {}
    for _, s in done.values():
        statuses[s] = statuses.get(s, 0) + 1
    return {
        "offered_per_s": rate,
        "jobs": len(corrs),
        "final": len(done),
        "lost": len(corrs) - len(done) if all_final else None,
        "publish_s": round(published - t0, 2),
        "achieved_per_s": round(len(done) / max(last - t0, 1e-9), 1),
        "final_in_window_per_s": round(in_window / max(published - t0, 1e-9), 1),
        "latency_ms": {q: round(pct(lat, q), 1) for q in (50, 90, 99)},
        "peak_lag": lag.reset(),
        "statuses": statuses,
        "load_avg_1m": load_avg(),
        "corrs": corrs,
    }


def batch_sizes(ports: dict[str, int]) -> dict[str, tuple[float, float]]:
    """Each service's ``qbridge_consumer_batch_messages`` histogram: (sum, count)."""
    out: dict[str, tuple[float, float]] = {}
    for name, port in ports.items():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            continue
        totals = {"_sum": 0.0, "_count": 0.0}
        for family in text_string_to_metric_families(text):
            if family.name != "qbridge_consumer_batch_messages":
                continue
            for sample in family.samples:
                suffix = sample.name.removeprefix(family.name)
                if suffix in totals:
                    totals[suffix] += sample.value
        out[name] = (totals["_sum"], totals["_count"])
    return out


def own_cpu_s() -> float:
    """CPU seconds of this process: the publisher and the follower."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def stored(dsn: str, tenant: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM jobs WHERE tenant = %(t)s),"
            " (SELECT count(*) FROM solutions WHERE tenant = %(t)s),"
            " (SELECT count(DISTINCT job_id) FROM solutions WHERE tenant = %(t)s)",
            {"t": tenant},
        ).fetchone()
    assert row is not None
    return {"jobs": int(row[0]), "solutions": int(row[1]), "distinct_solutions": int(row[2])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="short phases (a smoke run)")
    ap.add_argument("--latency-rate", type=float, default=20.0)
    ap.add_argument("--latency-s", type=float, default=30.0)
    ap.add_argument(
        "--curve", default="20,50,100,200,350,500,750,1000", help="offered loads, jobs/s"
    )
    ap.add_argument("--step-s", type=float, default=10.0)
    ap.add_argument("--sustained-rate", type=float, default=1000.0)
    ap.add_argument("--sustained-s", type=float, default=60.0)
    ap.add_argument("--skip-curve", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.latency_s, args.step_s, args.sustained_s = 10.0, 4.0, 15.0
        args.curve = "20,200,500"
    registry = Registry(REPO / "schemas" / "registry.json")
    tenant = f"bench-{uuid.uuid4().hex[:6]}"
    result: dict[str, Any] = {"load_avg_at_start": load_avg(), "cores": os.cpu_count()}

    with LocalStack() as stack:
        kafka = KafkaSettings(bootstrap_servers=stack.bootstrap_servers)
        ensure_topics(kafka)
        pipe = Pipeline(
            stack.bootstrap_servers,
            stack.dsn,
            REPO / ".cache" / "bench" / time.strftime("%Y%m%d-%H%M%S"),
            extra_env={"QBRIDGE_LOG_LEVEL": "WARNING"},
        )
        pipe.start()
        fol = Follower(stack.bootstrap_servers, registry)
        lag = LagSampler(kafka)
        pub = Publisher(stack.bootstrap_servers, registry, tenant)
        try:
            warm = step(pub, fol, lag, 20, 2, 120)  # connections, caches, solver start-up
            print(f"warm-up: {warm['final']}/{warm['jobs']} final")

            low = step(pub, fol, lag, args.latency_rate, args.latency_s, 120)
            result["low_load"] = {k: v for k, v in low.items() if k != "corrs"}
            print(
                f"latency at {args.latency_rate:g} jobs/s offered ({low['jobs']} jobs):"
                f" p50 {low['latency_ms'][50]} ms  p90 {low['latency_ms'][90]} ms"
                f"  p99 {low['latency_ms'][99]} ms  (load {low['load_avg_1m']})"
            )

            curve = []
            if not args.skip_curve:
                print(
                    f"\n{'offered/s':>9} {'achieved/s':>10} {'p50 ms':>8} {'p99 ms':>9}"
                    f" {'peak lag':>8} {'lost':>5} {'load':>5}"
                )
                for rate in (float(r) for r in args.curve.split(",")):
                    s = step(pub, fol, lag, rate, args.step_s, 300)
                    curve.append({k: v for k, v in s.items() if k != "corrs"})
                    print(
                        f"{rate:>9g} {s['achieved_per_s']:>10} {s['latency_ms'][50]:>8}"
                        f" {s['latency_ms'][99]:>9} {s['peak_lag']:>8} {s['lost']!s:>5}"
                        f" {s['load_avg_1m']:>5}"
                    )
            result["curve"] = curve

            pids = {n: svc.proc.pid for n, svc in pipe.services.items() if svc.proc is not None}
            for name, server in (("kafka", stack.kafka), ("postgres", stack.postgres)):
                if server is not None and server.pid is not None:
                    pids[name] = server.pid
            ports = {n: svc.port for n, svc in pipe.services.items()}
            batches0, own0 = batch_sizes(ports), own_cpu_s()
            cpu0 = cpu_seconds(pids)
            sus = step(pub, fol, lag, args.sustained_rate, args.sustained_s, 900)
            # The sink stores outcomes after they were published: wait until it caught up.
            published_total = len(pub.sent_at)
            t_sink = time.perf_counter()
            counted = stored(stack.dsn, tenant)
            while counted["solutions"] < published_total and time.perf_counter() - t_sink < 900:
                time.sleep(1)
                counted = stored(stack.dsn, tenant)
            result["sink_caught_up_after_s"] = round(time.perf_counter() - t_sink, 1)
            cpu1 = cpu_seconds(pids)
            own1, batches1 = own_cpu_s(), batch_sizes(ports)
            result["bench_cpu_ms_per_job"] = round((own1 - own0) * 1000 / sus["jobs"], 2)
            result["mean_consumer_batch"] = {
                n: round((batches1[n][0] - batches0[n][0]) / (batches1[n][1] - batches0[n][1]), 1)
                for n in batches1
                if n in batches0 and batches1[n][1] > batches0[n][1]
            }
            # CPU per job does not depend on how busy the shared machine is: it gives the
            # throughput this pipeline would reach with the cores to itself.
            per_job = {n: round((cpu1[n] - cpu0[n]) * 1000 / sus["jobs"], 2) for n in pids}
            total_ms = sum(per_job.values())
            result["cpu_ms_per_job"] = {**per_job, "total": round(total_ms, 2)}
            result["projected_jobs_per_s_on_dedicated_cores"] = round(
                (os.cpu_count() or 1) * 1000 / total_ms, 1
            )
            result["sustained"] = {k: v for k, v in sus.items() if k != "corrs"}
            result["stored_in_postgres"] = counted
            print(
                f"\nsustained: {args.sustained_rate:g} jobs/s offered for {args.sustained_s:g} s"
                f" ({sus['jobs']} jobs): final within the window {sus['final_in_window_per_s']}"
                f" jobs/s; all final at {sus['achieved_per_s']} jobs/s overall;"
                f" lost {sus['lost']}; latency p50 {sus['latency_ms'][50]} ms"
                f" p99 {sus['latency_ms'][99]} ms; peak lag {sus['peak_lag']};"
                f" load {sus['load_avg_1m']}"
            )
            print(
                f"CPU per job (ms, summed over the sustained phase): {result['cpu_ms_per_job']}"
                f" -> {result['projected_jobs_per_s_on_dedicated_cores']} jobs/s if the"
                f" {os.cpu_count()} cores were the pipeline's alone; the bench's own publisher"
                f" and follower: {result['bench_cpu_ms_per_job']} ms per job"
            )
            print(f"mean messages per consumer batch: {result['mean_consumer_batch']}")
            print(
                f"PostgreSQL (every job of the run, {published_total} published; the sink"
                f" caught up {result['sink_caught_up_after_s']} s after the last outcome):"
                f" {counted}"
                f" -> exactly one solution per job:"
                f" {counted['solutions'] == counted['distinct_solutions'] == published_total}"
            )
        finally:
            lag.close()
            fol.close()
            pipe.stop()

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "pipeline.json"
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
