"""``make chaos``: the whole pipeline under steady load while every component is hurt.

A plain upstream producer (confluent-kafka + fastavro, ``ProblemRequest`` from
``schemas/registry.json`` with the Confluent framing, none of qbridge's bus code) sends
small MaxCut jobs at a steady rate. Meanwhile, one fault at a time:

* SIGKILL of each service (restarted 2 s later) and of the Kafka broker;
* PostgreSQL frozen (SIGSTOP) for a while, then PostgreSQL killed and restarted later;
* a duplicate flood (already-sent requests sent again), a garbage flood (random bytes),
  and one oversized (~1 MB) request.

After each fault a probe job is sent; the fault's recovery time is from the fault's start
until the probe is final in the results database. At the end the load stops, the run
waits for every job to be final and prints the ledger: sent / final / lost / stored twice
/ DLQ count against garbage injected / recovery seconds per fault. Numbers, no asserts;
the machine is shared, so the times are pessimistic.

Usage: ``python bench/chaos.py [--rate 4] [--pause 15] [--quick]``
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import random
import signal
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Consumer, Producer
from fastavro import parse_schema, schemaless_writer

from devstack.pipeline import Pipeline
from devstack.stack import LocalStack
from qbridge.bus import KafkaSettings, ensure_topics  # topic set-up only

REPO = Path(__file__).resolve().parents[1]

logger = logging.getLogger("chaos")

REQUESTS = "qbridge.problem-requests.v1"
DLQ = "qbridge.dead-letters.v1"
FINAL = ("succeeded", "degraded", "failed", "expired")


def _latest(subject: str) -> tuple[int, Any]:
    registry = json.loads((REPO / "schemas" / "registry.json").read_text())
    versions = registry["subjects"][subject]
    latest = max(versions, key=lambda v: v["version"])
    named: dict[str, Any] = {}
    for sub, vs in registry["subjects"].items():  # named types referenced by the schema
        if sub != subject:
            parse_schema(max(vs, key=lambda v: v["version"])["schema"], named_schemas=named)
    return int(latest["id"]), parse_schema(latest["schema"], named_schemas=named)


class Upstream:
    """A plain producer of ``ProblemRequest`` events, as any upstream system would write."""

    def __init__(self, bootstrap: str, run: str) -> None:
        self.schema_id, self.schema = _latest("qbridge.ProblemRequest")
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
             "message.max.bytes": 2_000_000, "linger.ms": 5}
        )  # fmt: skip
        self.run = run
        self.rng = random.Random(run)
        self.sent: dict[str, bytes] = {}  # correlation id -> encoded request
        self.errors = 0
        self.lock = threading.Lock()

    def encode(self, record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(struct.pack(">bI", 0, self.schema_id))
        schemaless_writer(buf, self.schema, record)
        return buf.getvalue()

    def request(self, corr: str, nodes: int = 8) -> dict[str, Any]:
        edges = {(i, (i + 1) % nodes) for i in range(nodes)}
        while len(edges) < nodes * 3 // 2:
            u, v = self.rng.sample(range(nodes), 2)
            edges.add((min(u, v), max(u, v)))
        return {
            "request_id": corr, "idempotency_key": corr, "tenant": f"chaos-{self.run}",
            "problem_type": "maxcut",
            "problem": ("qbridge.MaxCutProblem", {
                "num_nodes": nodes,
                "edges": [{"u": u, "v": v, "weight": round(self.rng.uniform(0.5, 2), 3)}
                          for u, v in sorted(edges)],
            }),
            "timeout_ms": 30_000, "fallback_policy": self.rng.choice(["auto", "classical_only"]),
            "priority": 5, "shot_budget": 1024, "seed": None, "correlation_id": corr,
            "tags": {"run": self.run}, "created_at": datetime.now(UTC),
        }  # fmt: skip

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            with self.lock:
                self.errors += 1
            logger.warning("upstream delivery failed: %s", err)

    def produce(self, key: str, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(REQUESTS, value, key=key, on_delivery=self._on_delivery)
                break
            except BufferError:
                self.producer.poll(0.2)
        self.producer.poll(0)

    def send_job(self, prefix: str = "job") -> str:
        corr = f"{prefix}-{self.run}-{uuid.uuid4().hex[:8]}"
        value = self.encode(self.request(corr))
        with self.lock:
            self.sent[corr] = value
        self.produce(corr, value)
        return corr


class Ledger:
    """Reads the results database."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def _query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        try:
            with psycopg.connect(self.dsn, connect_timeout=3) as conn:
                return list(conn.execute(sql, args).fetchall())  # type: ignore[arg-type]
        except psycopg.Error:
            return []  # the database may be down right now (a fault)

    def final(self, corrs: list[str]) -> set[str]:
        rows = self._query(
            "SELECT correlation_id FROM jobs WHERE correlation_id = ANY(%s) AND status = ANY(%s)",
            corrs,
            list(FINAL),
        )
        return {r[0] for r in rows}

    def stored_twice(self, tenant: str) -> int:
        rows = self._query(
            "SELECT count(*) FROM (SELECT t.job_id FROM status_transitions t JOIN jobs j"
            " USING (job_id) WHERE j.tenant = %s AND t.to_status = ANY(%s)"
            " GROUP BY t.job_id HAVING count(*) > 1) x",
            tenant,
            list(FINAL),
        )
        return int(rows[0][0]) if rows else -1

    def jobs_of(self, tenant: str) -> int:
        rows = self._query("SELECT count(*) FROM jobs WHERE tenant = %s", tenant)
        return int(rows[0][0]) if rows else -1


def dlq_counts(bootstrap: str, prefixes: tuple[str, ...]) -> dict[str, int]:
    """DLQ records per original-key prefix (read from the beginning)."""
    c = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"chaos-dlq-{uuid.uuid4().hex[:6]}",
         "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )  # fmt: skip
    c.subscribe([DLQ])
    counts = dict.fromkeys(prefixes, 0)
    quiet_until = time.monotonic() + 15
    while time.monotonic() < quiet_until:
        m = c.poll(0.5)
        if m is None or m.error() is not None:
            continue
        quiet_until = time.monotonic() + 5
        key = (m.key() or b"").decode(errors="replace")
        for p in prefixes:
            if key.startswith(p):
                counts[p] += 1
    c.close()
    return counts


class Chaos:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run = uuid.uuid4().hex[:6]
        self.stack = LocalStack(start_timeout=300)  # a loaded shared machine starts slowly
        self.pipeline: Pipeline | None = None
        self.upstream: Upstream | None = None
        self.ledger: Ledger | None = None
        self.stop_load = threading.Event()
        self.recovery: list[tuple[str, float | None]] = []
        self.garbage = 0
        self.oversize = 0
        self.duplicates = 0

    # --- load --------------------------------------------------------------------------

    def _load(self) -> None:
        assert self.upstream is not None
        period = 1.0 / self.args.rate
        nxt = time.monotonic()
        while not self.stop_load.is_set():
            self.upstream.send_job()
            nxt += period
            time.sleep(max(0.0, nxt - time.monotonic()))

    # --- faults ------------------------------------------------------------------------

    def _probe(self, name: str, started: float, timeout: float = 180) -> None:
        assert self.upstream is not None and self.ledger is not None
        corr = self.upstream.send_job("probe")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ledger.final([corr]):
                took = time.monotonic() - started
                self.recovery.append((name, took))
                logger.info("fault %-28s recovered in %.1fs", name, took)
                return
            time.sleep(0.5)
        self.recovery.append((name, None))
        logger.error("fault %s: probe not final after %.0fs", name, timeout)

    def kill_service(self, name: str) -> Callable[[], None]:
        def fault() -> None:
            assert self.pipeline is not None
            self.pipeline[name].kill()
            time.sleep(2)
            self.pipeline.restart(name)

        return fault

    def kill_broker(self) -> None:
        assert self.stack.kafka is not None
        self.stack.kafka.restart(kill=True)

    def freeze_postgres(self) -> None:
        assert self.stack.postgres is not None and self.stack.postgres.pid
        pid = self.stack.postgres.pid
        os.killpg(os.getpgid(pid), signal.SIGSTOP) if _own_group(pid) else os.kill(
            pid, signal.SIGSTOP
        )
        time.sleep(self.args.freeze)
        os.killpg(os.getpgid(pid), signal.SIGCONT) if _own_group(pid) else os.kill(
            pid, signal.SIGCONT
        )

    def kill_postgres(self) -> None:
        assert self.stack.postgres is not None
        self.stack.postgres.stop_process(kill=True)
        time.sleep(self.args.pg_down)
        self.stack.postgres.start()

    def duplicate_flood(self) -> None:
        assert self.upstream is not None
        with self.upstream.lock:
            already = list(self.upstream.sent.items())[-200:]
        for corr, value in already:
            self.upstream.produce(corr, value)
            self.duplicates += 1

    def garbage_flood(self) -> None:
        assert self.upstream is not None
        rng = random.Random(self.run)
        for i in range(200):
            body = rng.randbytes(rng.randrange(1, 200))
            if i % 4 == 0:  # framed, known schema id, garbage body
                body = struct.pack(">bI", 0, self.upstream.schema_id) + body
            self.upstream.produce(f"garbage-{self.run}-{i}", body)
            self.garbage += 1

    def oversized_event(self) -> None:
        assert self.upstream is not None
        record = self.upstream.request(f"oversize-{self.run}", nodes=2000)
        edges: set[tuple[int, int]] = set()
        rng = random.Random(1)
        while len(edges) < 83_000:
            u, v = rng.sample(range(2000), 2)
            edges.add((min(u, v), max(u, v)))
        record["problem"][1]["edges"] = [{"u": u, "v": v, "weight": 1.0} for u, v in edges]
        value = self.upstream.encode(record)
        logger.info("oversized request: %d bytes", len(value))
        self.upstream.produce(f"oversize-{self.run}", value)
        self.oversize += 1

    # --- run ---------------------------------------------------------------------------

    def faults(self) -> list[tuple[str, Callable[[], None]]]:
        services = ["intake", "orchestrator", "classical-fallback", "quantum-executor",
                    "results-sink"]  # fmt: skip
        out: list[tuple[str, Callable[[], None]]] = [
            (f"SIGKILL {s}", self.kill_service(s)) for s in services
        ]
        out += [
            ("SIGKILL kafka broker", self.kill_broker),
            (f"SIGSTOP postgres {self.args.freeze:.0f}s", self.freeze_postgres),
            (f"SIGKILL postgres {self.args.pg_down:.0f}s", self.kill_postgres),
            ("duplicate flood", self.duplicate_flood),
            ("garbage flood (200)", self.garbage_flood),
            ("oversized event (~1 MB)", self.oversized_event),
        ]
        if self.args.quick:
            out = [out[1], out[5], out[7], out[9], out[10]]
        return out

    def main(self) -> int:
        started = time.monotonic()
        self.stack.start()
        try:
            ensure_topics(KafkaSettings(bootstrap_servers=self.stack.bootstrap_servers))
            log_dir = REPO / "bench" / "results" / f"chaos-{self.run}"
            self.pipeline = Pipeline(self.stack.bootstrap_servers, self.stack.dsn, log_dir)
            self.pipeline.start()
            self.upstream = Upstream(self.stack.bootstrap_servers, self.run)
            self.ledger = Ledger(self.stack.dsn)
            load = threading.Thread(target=self._load, daemon=True)
            load.start()
            time.sleep(self.args.pause)
            for name, fault in self.faults():
                logger.info("=== fault: %s", name)
                t0 = time.monotonic()
                try:
                    fault()
                except Exception:
                    logger.exception("fault %s could not be applied", name)
                self._probe(name, t0)
                time.sleep(self.args.pause)
            self.stop_load.set()
            load.join()
            self.upstream.producer.flush(60)
            self._report(started, log_dir)
        finally:
            if self.pipeline is not None:
                self.pipeline.stop()
            self.stack.stop()
        return 0

    def _report(self, started: float, log_dir: Path) -> None:
        assert self.upstream is not None and self.ledger is not None
        corrs = list(self.upstream.sent)
        deadline = time.monotonic() + self.args.drain
        final: set[str] = set()
        while time.monotonic() < deadline:
            final = self.ledger.final(corrs)
            if len(final) == len(corrs):
                break
            time.sleep(2)
        tenant = f"chaos-{self.run}"
        dlq = dlq_counts(
            self.stack.bootstrap_servers, (f"garbage-{self.run}", f"oversize-{self.run}")
        )
        lines = [
            "",
            f"chaos ledger (run {self.run}, {self.args.rate}/s steady load, "
            f"{time.monotonic() - started:.0f}s, logs in {log_dir.relative_to(REPO)})",
            f"  sent (distinct jobs)        {len(corrs)}",
            f"  final                       {len(final)}",
            f"  lost                        {len(corrs) - len(final)}",
            f"  stored twice                {self.ledger.stored_twice(tenant)}",
            f"  jobs rows for the tenant    {self.ledger.jobs_of(tenant)}"
            f"  (duplicates re-sent: {self.duplicates})",
            f"  upstream delivery errors    {self.upstream.errors}",
            f"  DLQ garbage / injected      {dlq[f'garbage-{self.run}']} / {self.garbage}",
            f"  DLQ oversized / injected    {dlq[f'oversize-{self.run}']} / {self.oversize}",
            "  recovery (fault start -> probe job final):",
        ]
        for name, took in self.recovery:
            lines.append(f"    {name:<30} {'not recovered' if took is None else f'{took:6.1f} s'}")
        print("\n".join(lines), flush=True)


def _own_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=4.0, help="jobs per second")
    parser.add_argument("--pause", type=float, default=10.0, help="seconds between faults")
    parser.add_argument("--freeze", type=float, default=15.0, help="PostgreSQL SIGSTOP seconds")
    parser.add_argument("--pg-down", type=float, default=20.0, help="PostgreSQL down seconds")
    parser.add_argument("--drain", type=float, default=300.0, help="max wait for final states")
    parser.add_argument("--quick", action="store_true", help="a subset of the faults")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return Chaos(args).main()


if __name__ == "__main__":
    sys.exit(main())
