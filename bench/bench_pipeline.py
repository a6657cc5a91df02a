"""End-to-end pipeline benchmark: latency of small classical jobs and sustained throughput.

Starts a real local Kafka + PostgreSQL and every service as a process (like `make run`),
then measures, in one run:

* latency: small classical jobs (8-node MaxCut, ``classical_only``) submitted one at a
  time; time from producing the request to consuming its final outcome, p50/p90/p99,
  and the pipeline overhead = latency minus the solver's own execute time;
* throughput: a burst of jobs published at once; jobs per second until all are final.

Usage: python bench/bench_pipeline.py [--quick] [--latency-jobs N] [--burst-jobs N]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from devstack.pipeline import Pipeline
from devstack.stack import LocalStack
from qbridge import topics
from qbridge.bus import BusProducer, KafkaSettings, ensure_topics
from qbridge.bus import headers as h
from qbridge.contracts import AvroCodec, default_registry
from qbridge.samples import problem_request, regular_maxcut

RESULTS = Path(__file__).resolve().parent / "results"


class OutcomeFollower:
    """Consumes final outcomes from the end of the topic and timestamps them by correlation id."""

    def __init__(self, settings: KafkaSettings, codec: AvroCodec) -> None:
        self.codec = codec
        self.seen: dict[str, tuple[float, dict[str, Any]]] = {}
        self.cond = threading.Condition()
        self._stop = threading.Event()
        self._c = Consumer(
            {
                **settings.client_config(),
                "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
            }
        )
        md = self._c.list_topics(topics.JOB_OUTCOMES.name, timeout=10)
        parts = md.topics[topics.JOB_OUTCOMES.name].partitions
        self._c.assign([TopicPartition(topics.JOB_OUTCOMES.name, p, OFFSET_END) for p in parts])
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            m = self._c.poll(0.05)
            if m is None or m.error() is not None:
                continue
            now = time.perf_counter()
            v = self.codec.decode(m.value(), topics.JOB_OUTCOMES.record).value
            with self.cond:
                self.seen.setdefault(str(v["correlation_id"]), (now, v))
                self.cond.notify_all()

    def wait(self, corrs: set[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not corrs <= set(self.seen):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(corrs - set(self.seen))} jobs not final")
                self.cond.wait(left)

    def close(self) -> None:
        self._stop.set()
        self._t.join()
        self._c.close()


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--latency-jobs", type=int, default=200)
    ap.add_argument("--burst-jobs", type=int, default=500)
    args = ap.parse_args()
    n_lat = 20 if args.quick else args.latency_jobs
    n_burst = 50 if args.quick else args.burst_jobs
    rng = random.Random(1)
    problems = [regular_maxcut(8, rng) for _ in range(20)]

    with LocalStack() as stack:
        kafka = KafkaSettings(bootstrap_servers=stack.bootstrap_servers)
        ensure_topics(kafka)
        pipe = Pipeline(
            stack.bootstrap_servers,
            stack.dsn,
            Path(".cache/bench") / time.strftime("%Y%m%d-%H%M%S"),
            extra_env={"QBRIDGE_LOG_LEVEL": "WARNING"},
        )
        pipe.start()
        codec = AvroCodec(default_registry())
        producer = BusProducer(kafka, codec, client_id="bench")
        follower = OutcomeFollower(kafka, codec)
        try:

            def submit(i: int) -> tuple[str, float]:
                corr = f"bench-{uuid.uuid4().hex[:12]}"
                rec = problem_request(
                    problems[i % len(problems)],
                    tenant="bench",
                    correlation_id=corr,
                    idempotency_key=corr,  # same problem, distinct jobs (else intake dedups)
                    fallback_policy="classical_only",
                    timeout_ms=60_000,
                )
                t0 = time.perf_counter()
                producer.send(
                    topics.PROBLEM_REQUESTS,
                    rec,
                    key=rec["request_id"],
                    headers=[(h.CORRELATION_ID, corr.encode())],
                )
                return corr, t0

            # warm-up (JIT-free Python, but caches, connections and CP-SAT loading)
            warm = [submit(i) for i in range(10)]
            producer.flush()
            follower.wait({c for c, _ in warm}, 120)

            latencies, overheads, solve = [], [], []
            for i in range(n_lat):
                corr, t0 = submit(i)
                producer.flush()
                follower.wait({corr}, 60)
                t1, v = follower.seen[corr]
                lat = (t1 - t0) * 1000
                timings = (v["provenance"] or {}).get("timings") or {}
                ex = float(timings.get("execute_ms", 0.0)) + float(
                    timings.get("postprocess_ms", 0.0)
                )
                latencies.append(lat)
                solve.append(ex)
                overheads.append(lat - ex)

            t_start = time.perf_counter()
            burst = [submit(i) for i in range(n_burst)]
            producer.flush()
            t_published = time.perf_counter()
            follower.wait({c for c, _ in burst}, 600)
            t_done = max(follower.seen[c][0] for c, _ in burst)
            burst_lat = [(follower.seen[c][0] - t0) * 1000 for c, t0 in burst]
            statuses: dict[str, int] = {}
            for c, _ in burst:
                s = str(follower.seen[c][1]["status"])
                statuses[s] = statuses.get(s, 0) + 1
        finally:
            follower.close()
            pipe.stop()

    result = {
        "latency_jobs": n_lat,
        "latency_ms": {q: round(pct(latencies, q), 1) for q in (50, 90, 99)},
        "latency_mean_ms": round(statistics.mean(latencies), 1),
        "solver_ms": {q: round(pct(solve, q), 1) for q in (50, 99)},
        "overhead_ms": {q: round(pct(overheads, q), 1) for q in (50, 90, 99)},
        "overhead_share_p50": round(pct(overheads, 50) / pct(latencies, 50), 3),
        "burst_jobs": n_burst,
        "burst_publish_s": round(t_published - t_start, 2),
        "burst_total_s": round(t_done - t_start, 2),
        "throughput_jobs_per_s": round(n_burst / (t_done - t_start), 1),
        "burst_latency_ms": {q: round(pct(burst_lat, q), 1) for q in (50, 99)},
        "burst_statuses": statuses,
    }
    print("\nEnd-to-end pipeline (5 services as processes, real Kafka + PostgreSQL, 2 cores)")
    print(f"  sequential small classical jobs (n={n_lat}):")
    print(
        f"    latency  p50 {result['latency_ms'][50]:>8} ms  p90 {result['latency_ms'][90]:>8} ms"
        f"  p99 {result['latency_ms'][99]:>8} ms"
    )
    print(f"    solver   p50 {result['solver_ms'][50]:>8} ms  p99 {result['solver_ms'][99]:>8} ms")
    print(
        f"    overhead p50 {result['overhead_ms'][50]:>8} ms  p99 {result['overhead_ms'][99]:>8} ms"
        f"  (share of p50 latency {result['overhead_share_p50']:.0%})"
    )
    print(
        f"  burst of {n_burst} jobs: all final after {result['burst_total_s']} s ->"
        f" {result['throughput_jobs_per_s']} jobs/s; latency p50"
        f" {result['burst_latency_ms'][50]} ms p99 {result['burst_latency_ms'][99]} ms;"
        f" statuses {statuses}"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "pipeline.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"  written to {out}")


if __name__ == "__main__":
    main()
