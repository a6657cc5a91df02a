"""One consumer-lag monitor for every reader: the orchestrator, the gateway, the dashboard.

:class:`LagMonitor` reads the lag (committed offsets vs high watermarks) of a set of
consumer groups without joining them, keeps the latest :class:`LagSnapshot`, and
optionally exports it to a gauge labelled ``(group, topic)``. It is read either on the
caller's schedule (:meth:`LagMonitor.refresh`, the orchestrator's run loop), in a
background thread (:meth:`LagMonitor.start`), or on demand with a cache
(``monitor()``, the dashboard's page loads).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import Gauge

from qbridge.bus.lag import LagReader
from qbridge.bus.settings import KafkaSettings
from qbridge.topics import ConsumerGroup

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LagSnapshot:
    """Consumer-group lag at one moment.

    Attributes:
        groups: Group -> topic -> messages not yet committed.
        read_at: When it was read (UTC).
        error: Why (some of) it could not be read, if so.
    """

    groups: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    read_at: datetime | None = None
    error: str | None = None

    def total(self, groups: Iterable[str] | None = None) -> int | None:
        """Messages behind over ``groups`` (default: all known), None if none is known."""
        names = list(self.groups) if groups is None else [g for g in groups if g in self.groups]
        if not names:
            return None
        return sum(sum(self.groups[g].values()) for g in names)


class LagMonitor:
    """Reads consumer groups' lag and keeps the latest values."""

    def __init__(
        self,
        settings: KafkaSettings | None,
        groups: Sequence[ConsumerGroup],
        *,
        timeout_s: float = 5.0,
        ttl_s: float = 0.0,
        keep_stale: bool = False,
        gauge: Gauge | None = None,
    ) -> None:
        """Describe the monitor (Kafka clients are created on the first read).

        Args:
            settings: Kafka settings; None for a monitor that never reads (lag unknown).
            groups: The consumer groups to read.
            timeout_s: Broker timeout of one group's read.
            ttl_s: Calling the monitor reuses a snapshot younger than this.
            keep_stale: On a failed read keep a group's last value (routing prefers an
                old value to none) instead of forgetting it (admission prefers unknown).
            gauge: Set to each topic's lag, labelled ``(group, topic)``.
        """
        self.settings = settings
        self.groups = tuple(groups)
        self.timeout_s = timeout_s
        self.ttl_s = ttl_s
        self.keep_stale = keep_stale
        self.gauge = gauge
        self._readers: dict[str, LagReader] = {}
        self._lock = threading.Lock()
        self._latest = LagSnapshot(error=None if settings else "lag is not read here")
        self._read_mono = float("-inf")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- reading ------------------------------------------------------------------------

    def refresh(self) -> LagSnapshot:
        """Read every group's lag now and return the new snapshot.

        A group that cannot be read is reported in ``error`` and, unless ``keep_stale``,
        left out of the snapshot.
        """
        if self.settings is None:
            return self._latest
        with self._lock:
            groups: dict[str, dict[str, int]] = {}
            errors = []
            for group in self.groups:
                try:
                    reader = self._readers.get(group.name)
                    if reader is None:
                        reader = self._readers[group.name] = LagReader(self.settings, group.name)
                    per_topic = dict.fromkeys(group.topics, 0)
                    for p in reader.read(group.topics, timeout=self.timeout_s):
                        per_topic[p.topic] += p.lag
                except Exception as exc:  # a lag reader never takes its caller down
                    logger.warning("lag of %s unavailable: %s", group.name, exc)
                    errors.append(f"{group.name}: {exc}")
                    stale = self._latest.groups.get(group.name)
                    if self.keep_stale and stale is not None:
                        groups[group.name] = dict(stale)
                    continue
                groups[group.name] = per_topic
                if self.gauge is not None:
                    for topic, lag in per_topic.items():
                        self.gauge.labels(group.name, topic).set(lag)
            self._latest = LagSnapshot(
                groups=groups,
                read_at=datetime.now(UTC) if groups else None,
                error="; ".join(errors) or None,
            )
            self._read_mono = time.monotonic()
            return self._latest

    def __call__(self) -> LagSnapshot:
        """The current lag: the latest snapshot if younger than ``ttl_s``, else a new read."""
        with self._lock:
            if time.monotonic() - self._read_mono < self.ttl_s:
                return self._latest
        return self.refresh()

    @property
    def latest(self) -> LagSnapshot:
        """The latest snapshot (never reads)."""
        return self._latest

    @property
    def by_group(self) -> dict[str, int]:
        """Group -> messages behind, from the latest snapshot."""
        return {g: sum(per_topic.values()) for g, per_topic in self._latest.groups.items()}

    def total(self) -> int | None:
        """Messages behind over every group of the latest snapshot, None while unknown."""
        return self._latest.total()

    # --- background refresh -------------------------------------------------------------

    def start(self, interval_s: float, retry_s: float | None = None) -> None:
        """Refresh now and then every ``interval_s`` in a daemon thread.

        Args:
            interval_s: Time between reads.
            retry_s: Time before the next read after a failed one (e.g. the group
                coordinator still loading); default ``interval_s``.
        """
        if self.settings is None or self._thread is not None:
            return

        def _loop() -> None:
            while not self._stop.is_set():
                wait = interval_s
                try:
                    if self.refresh().error is not None:
                        wait = min(interval_s, retry_s if retry_s is not None else interval_s)
                except Exception:  # never let the refresher die
                    logger.exception("refreshing consumer lag failed")
                self._stop.wait(wait)

        self._thread = threading.Thread(target=_loop, name="lag-monitor", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the refresher and close the Kafka clients."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s * len(self.groups) + 5)
            self._thread = None
        with self._lock:
            for reader in self._readers.values():
                try:
                    reader.close()
                except Exception:  # closing is best effort
                    logger.debug("closing a lag reader failed", exc_info=True)
            self._readers.clear()
