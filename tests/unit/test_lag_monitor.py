"""The one lag monitor (orchestrator, gateway, dashboard), with lag readers faked."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry, Gauge

from qbridge.bus import KafkaSettings, PartitionLag
from qbridge.bus import lag_monitor as lm
from qbridge.errors import BusError
from qbridge.topics import CLASSICAL_FALLBACK_GROUP, QUANTUM_EXECUTOR_GROUP

GROUPS = (QUANTUM_EXECUTOR_GROUP, CLASSICAL_FALLBACK_GROUP)


class FakeReader:
    """Stands in for LagReader: lag per group set by the test; None = the read fails."""

    lag: dict[str, int | None] = {}
    reads: list[str] = []
    closed: list[str] = []

    def __init__(self, settings: KafkaSettings, group: str) -> None:
        self.group = group

    def read(self, topics: Sequence[str], timeout: float = 10.0) -> list[PartitionLag]:
        FakeReader.reads.append(self.group)
        value = FakeReader.lag.get(self.group)
        if value is None:
            raise BusError(f"coordinator of {self.group} not available")
        # Two partitions of the first topic: the monitor sums per topic.
        return [
            PartitionLag(topics[0], 0, 0, 0, value, value - 1),
            PartitionLag(topics[0], 1, 0, 0, 1, 1),
        ]

    def close(self) -> None:
        FakeReader.closed.append(self.group)


@pytest.fixture(autouse=True)
def fake_readers(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeReader.lag, FakeReader.reads, FakeReader.closed = {}, [], []
    monkeypatch.setattr(lm, "LagReader", FakeReader)


def test_reads_every_group_sums_per_topic_and_exports_the_gauge() -> None:
    gauge = Gauge("lag_test", "lag", ["group", "topic"], registry=CollectorRegistry())
    FakeReader.lag = {QUANTUM_EXECUTOR_GROUP.name: 30, CLASSICAL_FALLBACK_GROUP.name: 4}
    monitor = lm.LagMonitor(KafkaSettings(), GROUPS, gauge=gauge)
    snap = monitor.refresh()
    q_topic = QUANTUM_EXECUTOR_GROUP.topics[0]
    assert snap.groups[QUANTUM_EXECUTOR_GROUP.name][q_topic] == 30
    assert monitor.by_group == {QUANTUM_EXECUTOR_GROUP.name: 30, CLASSICAL_FALLBACK_GROUP.name: 4}
    assert monitor.total() == 34
    assert snap.error is None and snap.read_at is not None
    assert gauge.labels(QUANTUM_EXECUTOR_GROUP.name, q_topic)._value.get() == 30
    monitor.close()
    assert sorted(FakeReader.closed) == sorted(g.name for g in GROUPS)


def test_a_failed_read_forgets_the_group_unless_stale_values_are_kept() -> None:
    FakeReader.lag = {QUANTUM_EXECUTOR_GROUP.name: 30, CLASSICAL_FALLBACK_GROUP.name: 4}
    forgetful = lm.LagMonitor(KafkaSettings(), GROUPS)
    keeping = lm.LagMonitor(KafkaSettings(), GROUPS, keep_stale=True)
    forgetful.refresh()
    keeping.refresh()
    FakeReader.lag[QUANTUM_EXECUTOR_GROUP.name] = None
    snap = forgetful.refresh()
    assert forgetful.by_group == {CLASSICAL_FALLBACK_GROUP.name: 4}
    assert snap.error is not None and QUANTUM_EXECUTOR_GROUP.name in snap.error
    keeping.refresh()
    assert keeping.by_group[QUANTUM_EXECUTOR_GROUP.name] == 30  # routing keeps the last value
    assert keeping.latest.error is not None


def test_nothing_known_is_none_not_zero() -> None:
    FakeReader.lag = {}
    monitor = lm.LagMonitor(KafkaSettings(), GROUPS)
    assert monitor.refresh().read_at is None
    assert monitor.total() is None
    unread = lm.LagMonitor(None, GROUPS)
    assert unread.refresh().groups == {} and unread.total() is None
    assert FakeReader.reads == [g.name for g in GROUPS]  # the unconfigured one never reads


def test_calls_reuse_a_snapshot_within_its_ttl() -> None:
    FakeReader.lag = {QUANTUM_EXECUTOR_GROUP.name: 3, CLASSICAL_FALLBACK_GROUP.name: 2}
    cached = lm.LagMonitor(KafkaSettings(), GROUPS, ttl_s=3600)
    first = cached()
    FakeReader.lag[QUANTUM_EXECUTOR_GROUP.name] = 50
    assert cached() is first
    assert cached.refresh().total() == 52  # an explicit refresh always reads
    uncached = lm.LagMonitor(KafkaSettings(), GROUPS, ttl_s=0)
    uncached()
    uncached()
    assert FakeReader.reads.count(QUANTUM_EXECUTOR_GROUP.name) == 4


def test_snapshot_total_over_some_groups() -> None:
    snap = lm.LagSnapshot(groups={"a": {"t1": 2, "t2": 3}, "b": {"t": 7}})
    assert snap.total() == 12
    assert snap.total(["a"]) == 5
    assert snap.total(["missing"]) is None
