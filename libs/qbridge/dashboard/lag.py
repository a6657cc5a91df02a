"""Consumer-group lag for the dashboard, read from Kafka and cached for a few seconds.

With :meth:`KafkaLag.start` it also refreshes in the background and exports every
group's lag as ``qbridge_consumer_lag_messages{group, topic}`` (the orchestrator
exports only the executors' groups, which it needs for routing).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from qbridge.bus import KafkaSettings, LagReader
from qbridge.dashboard.summary import LagSnapshot
from qbridge.errors import BusError
from qbridge.metrics import CONSUMER_LAG
from qbridge.topics import ALL_GROUPS, ConsumerGroup

logger = logging.getLogger(__name__)


class KafkaLag:
    """Reads every group's lag (committed offsets vs high watermarks) without joining it.

    Calling the instance returns a :class:`LagSnapshot`; a snapshot younger than
    ``ttl_s`` is reused so page reloads do not hammer the brokers.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        groups: Sequence[ConsumerGroup] = ALL_GROUPS,
        ttl_s: float = 5.0,
        timeout_s: float = 3.0,
    ) -> None:
        """Prepare readers (clients are created on first use)."""
        self._settings = settings
        self._groups = tuple(groups)
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._readers: dict[str, LagReader] = {}
        self._lock = threading.Lock()
        self._cached: LagSnapshot | None = None
        self._cached_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self) -> LagSnapshot:
        """The current lag (cached up to ``ttl_s``)."""
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached_at < self._ttl_s:
                return self._cached
            groups: dict[str, dict[str, int]] = {}
            errors = []
            for group in self._groups:
                try:
                    reader = self._readers.get(group.name)
                    if reader is None:
                        reader = self._readers[group.name] = LagReader(self._settings, group.name)
                    per_topic = dict.fromkeys(group.topics, 0)
                    for p in reader.read(group.topics, timeout=self._timeout_s):
                        per_topic[p.topic] += p.lag
                    groups[group.name] = per_topic
                except (BusError, Exception) as exc:  # a dashboard never fails on lag
                    logger.warning("lag of %s unavailable: %s", group.name, exc)
                    errors.append(f"{group.name}: {exc}")
            self._cached = LagSnapshot(
                groups=groups,
                read_at=datetime.now(UTC) if groups else None,
                error="; ".join(errors) or None,
            )
            self._cached_at = time.monotonic()
            for group_name, per_topic in groups.items():
                for topic, lag in per_topic.items():
                    CONSUMER_LAG.labels(group_name, topic).set(lag)
            return self._cached

    def start(self, interval_s: float = 15.0) -> None:
        """Refresh (and export) the lag every ``interval_s`` in a daemon thread."""
        if self._thread is not None:
            return

        def _loop() -> None:
            while not self._stop.is_set():
                wait = interval_s
                try:
                    if self().error is not None:
                        wait = min(interval_s, self._ttl_s)  # e.g. coordinator still loading
                except Exception:  # never let the refresher die
                    logger.exception("refreshing consumer lag failed")
                self._stop.wait(wait)

        self._thread = threading.Thread(target=_loop, name="kafka-lag", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the refresher and close the Kafka clients."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._timeout_s * len(self._groups) + 5)
            self._thread = None
        with self._lock:
            for reader in self._readers.values():
                try:
                    reader.close()
                except Exception:  # closing is best effort
                    logger.debug("closing a lag reader failed", exc_info=True)
            self._readers.clear()
