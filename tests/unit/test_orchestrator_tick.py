"""The orchestrator's idle tick survives database and Kafka outages (retried with backoff)."""

from __future__ import annotations

import logging
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from orchestrator import app as app_module
from orchestrator.app import OrchestratorApp
from orchestrator.config import OrchestratorSettings
from orchestrator.machine import JobState
from orchestrator.policy import JobFacts, reads_lag
from orchestrator.store import OutboxRow, StoreUnavailableError
from qbridge.contracts import AvroCodec
from qbridge.errors import DeliveryError


class FlakyStore:
    """Raises ``StoreUnavailableError`` while ``down``; counts the calls."""

    def __init__(self) -> None:
        self.down = True
        self.calls = 0
        self.unsent_rows: list[OutboxRow] = []
        self.marked: list[int] = []

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.down:
            raise StoreUnavailableError("orchestrator database unavailable: connection refused")

    def due(self, now_ms: int, limit: int = 100) -> list[str]:
        self._maybe_fail()
        return []

    def unsent(self, older_than_s: float, limit: int = 500) -> list[OutboxRow]:
        self._maybe_fail()
        return self.unsent_rows

    def mark_sent(self, ids: list[int]) -> None:
        self.marked += ids


class FakeProducer:
    def __init__(self) -> None:
        self.fail: Exception | None = None
        self.sent: list[str] = []

    def send_raw(self, topic: str, value: bytes, key: Any = None, headers: Any = None) -> None:
        self.sent.append(topic)

    def flush(self, timeout: float = 30.0) -> None:
        if self.fail is not None:
            raise self.fail


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(app_module.time, "monotonic", c)
    return c


def _app(store: Any, producer: Any, codec: AvroCodec) -> OrchestratorApp:
    return OrchestratorApp(OrchestratorSettings(), store, producer, codec, None)


def test_tick_survives_a_database_outage_and_retries_with_backoff(
    codec: AvroCodec, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    store, producer = FlakyStore(), FakeProducer()
    app = _app(store, producer, codec)
    with caplog.at_level(logging.WARNING):
        app.tick()  # must not raise
    assert store.calls == 1
    assert "periodic work failed (transient)" in caplog.text
    assert "retrying in 0.5s" in caplog.text

    clock.now += 0.2
    app.tick()  # inside the backoff: not tried again
    assert store.calls == 1

    clock.now += 0.4
    app.tick()  # tried again, fails again: the backoff doubles
    assert store.calls == 2
    assert "retrying in 1.0s" in caplog.text

    store.down = False
    clock.now += 1.1
    app.tick()
    assert store.calls == 4  # timers and outbox both ran
    assert app._tick_backoff == 0.0


def test_tick_backoff_is_capped(codec: AvroCodec, clock: Clock) -> None:
    store = FlakyStore()
    app = _app(store, FakeProducer(), codec)
    for _ in range(20):
        app.tick()
        clock.now += 60
    assert store.calls == 20
    assert app._tick_backoff == OrchestratorSettings().tick_max_backoff_s


def test_tick_survives_a_kafka_outage_while_resending_the_outbox(
    codec: AvroCodec, clock: Clock
) -> None:
    store, producer = FlakyStore(), FakeProducer()
    store.down = False
    store.unsent_rows = [OutboxRow("qbridge.job-status.v1", "j", b"x", {}, id=7)]
    producer.fail = DeliveryError("1 message(s) not delivered: broker down")
    app = _app(store, producer, codec)
    app.tick()
    assert store.marked == []  # not acknowledged: stays in the outbox
    producer.fail = None
    clock.now += 10
    app.tick()
    assert store.marked == [7]


class CountingLag:
    """A lag monitor that counts its reads."""

    def __init__(self) -> None:
        self.reads = 0
        self.by_group: dict[str, int] = {}

    def refresh(self) -> None:
        self.reads += 1


class _InlineThread:
    """Runs the target at ``start()``, so the test sees the read at once."""

    def __init__(self, target: Any, daemon: bool = False) -> None:
        self.target = target

    def start(self) -> None:
        self.target()


def test_lag_is_read_often_only_while_routing_depends_on_it(
    codec: AvroCodec, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        app_module, "threading", SimpleNamespace(Thread=_InlineThread, Lock=threading.Lock)
    )
    store, lag = FlakyStore(), CountingLag()
    store.down = False
    s = OrchestratorSettings()
    app = OrchestratorApp(s, store, FakeProducer(), codec, lag)  # type: ignore[arg-type]

    def reads_after(seconds: float) -> int:
        clock.now += seconds
        app.tick()
        return lag.reads

    assert reads_after(0) == 1  # first tick: read once
    # Only classical-only jobs so far: not read again at the fast cadence...
    assert [reads_after(s.lag_poll_ms / 1000) for _ in range(5)] == [1] * 5
    assert reads_after(s.lag_idle_poll_ms / 1000) == 2  # ...but at the slow one
    # A job whose routing looks at lag arrives: back to the fast cadence.
    app._decider({"num_qubits": 8})(
        JobState("j", "acme", "maxcut", "maximize", "c", 5, "auto", 1, 0, 1000, 0)
    )
    assert [reads_after(s.lag_poll_ms / 1000) for _ in range(2)] == [3, 4]


def test_only_jobs_that_may_go_quantum_or_wait_depend_on_lag() -> None:
    def facts(policy: str, priority: int) -> JobFacts:
        return JobFacts(
            tenant="t", fallback_policy=policy, priority=priority, num_qubits=8, shots=100
        )

    assert not reads_lag(facts("classical_only", 5), low_priority_below=3)
    assert reads_lag(facts("classical_only", 1), low_priority_below=3)
    assert reads_lag(facts("auto", 5), low_priority_below=3)
    assert reads_lag(facts("race", 5), low_priority_below=3)
