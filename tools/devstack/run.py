"""``make run``: the local stack, every service, a sample workload, the results table.

Starts a real Kafka and PostgreSQL, runs all services as local processes,
publishes a sample mix of problems as an upstream system would, waits for every
job to reach a final state (with progress), prints the results table from
PostgreSQL, then keeps serving until Ctrl-C (``--once`` exits after the sample).
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import threading
import time
import uuid

import psycopg
from confluent_kafka import Consumer

from devstack.paths import repo_root
from devstack.pipeline import Pipeline
from devstack.stack import LocalStack
from qbridge import topics
from qbridge.bus import BusProducer, KafkaSettings, ensure_topics
from qbridge.bus import headers as h
from qbridge.contracts import AvroCodec, default_registry
from qbridge.samples import problem_request, sample_mix

logger = logging.getLogger(__name__)


def publish_samples(producer: BusProducer, tenant: str) -> dict[str, str]:
    """Publish the sample mix; returns correlation id -> label."""
    sent = {}
    for label, problem, overrides in sample_mix():
        corr = f"sample-{label}-{uuid.uuid4().hex[:6]}"
        record = problem_request(problem, tenant=tenant, correlation_id=corr, **overrides)
        producer.send(
            topics.PROBLEM_REQUESTS,
            record,
            key=f"{tenant}:{record['request_id']}",
            headers=[
                (h.CORRELATION_ID, corr.encode()),
                (h.TRACEPARENT, h.new_traceparent().encode()),
            ],
        )
        sent[corr] = label
    producer.flush()
    return sent


def wait_final(
    settings: KafkaSettings, codec: AvroCodec, expected: dict[str, str], timeout: float
) -> dict[str, dict[str, object]]:
    """Follow the final-outcome topic until every expected job is final (prints progress)."""
    consumer = Consumer(
        {
            **settings.client_config(),
            "group.id": f"make-run-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topics.JOB_OUTCOMES.name])
    done: dict[str, dict[str, object]] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(done) < len(expected) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            value = codec.decode(msg.value(), topics.JOB_OUTCOMES.record).value
            corr = str(value["correlation_id"])
            if corr in expected and corr not in done:
                done[corr] = value
                print(
                    f"  [{len(done)}/{len(expected)}] {expected[corr]:<16} {value['status']:<9}"
                    f" via {value['route']}: {value['reason']}",
                    flush=True,
                )
    finally:
        consumer.close()
    return done


def wait_stored(dsn: str, correlation_ids: list[str], timeout: float = 30.0) -> int:
    """Wait until the results-sink has stored the final rows of these jobs; returns the count."""
    deadline = time.monotonic() + timeout
    stored = 0
    while time.monotonic() < deadline:
        with psycopg.connect(dsn) as conn:
            row = conn.execute(
                "SELECT count(*) FROM jobs j JOIN solutions s USING (job_id)"
                " WHERE j.correlation_id = ANY(%s)",
                (correlation_ids,),
            ).fetchone()
        stored = int(row[0]) if row else 0
        if stored >= len(correlation_ids):
            break
        time.sleep(0.2)
    return stored


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``make run``."""
    parser = argparse.ArgumentParser(prog="python -m devstack.run")
    parser.add_argument("--once", action="store_true", help="exit after the sample workload")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for results")
    parser.add_argument("--tenant", default="demo")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    log_dir = repo_root() / ".cache" / "run" / time.strftime("%Y%m%d-%H%M%S")
    started = time.monotonic()
    print("==> starting Kafka (KRaft) and PostgreSQL", flush=True)
    with LocalStack() as stack:
        print(
            f"    up in {stack.timings['total']:.1f}s: kafka {stack.bootstrap_servers}, {stack.dsn}"
        )
        kafka = KafkaSettings(bootstrap_servers=stack.bootstrap_servers)
        ensure_topics(kafka)
        pipeline = Pipeline(
            stack.bootstrap_servers,
            stack.dsn,
            log_dir,
            per_service_env={
                "gateway": {
                    "QBRIDGE_GRPC_PORT": "50051",
                    "QBRIDGE_API_KEYS": '{"demo-key": "demo"}',
                    # Development convenience (grpcurl list/describe); off by default.
                    "QBRIDGE_GRPC_REFLECTION": "true",
                }
            },
        )
        print(f"==> starting services (logs in {log_dir})", flush=True)
        try:
            pipeline.start()
            for svc in pipeline.services.values():
                print(f"    {svc.name:<20} metrics http://127.0.0.1:{svc.port}/metrics")
            sink = pipeline["results-sink"].port
            print(f"    dashboard            http://127.0.0.1:{sink}/dashboard")
            print(
                "    gateway (gRPC)       127.0.0.1:50051 — try: QBRIDGE_API_KEY=demo-key"
                " .venv/bin/python -m qbridge.cli solve examples/maxcut.json --deadline-ms 2000"
            )
            codec = AvroCodec(default_registry())
            producer = BusProducer(kafka, codec, client_id="make-run")
            print("==> publishing the sample workload", flush=True)
            expected = publish_samples(producer, args.tenant)
            done = wait_final(kafka, codec, expected, args.timeout)
            wait_stored(stack.dsn, list(done))
            print("==> results (from PostgreSQL)", flush=True)
            subprocess.run(
                [sys.executable, "-m", "results_sink", "results", "--database-url", stack.dsn],
                check=False,
            )
            missing = set(expected) - set(done)
            print(
                f"==> {len(done)}/{len(expected)} jobs final in "
                f"{time.monotonic() - started:.0f}s since start"
            )
            if missing:
                print(f"!! not final in time: {', '.join(expected[c] for c in missing)}")
                for svc in pipeline.services.values():
                    print(f"--- {svc.name} log tail ---\n{svc.tail(10)}")
            if args.once:
                return 0 if not missing else 1
            print("==> serving; press Ctrl-C to stop", flush=True)
            try:
                while not stop.wait(1.0):
                    pass
            except KeyboardInterrupt:
                pass
            return 0
        finally:
            print("==> stopping services", flush=True)
            codes = pipeline.stop()
            bad = {k: v for k, v in codes.items() if v not in (0, None)}
            if bad:
                print(f"    exit codes: {bad}")


if __name__ == "__main__":
    sys.exit(main())
