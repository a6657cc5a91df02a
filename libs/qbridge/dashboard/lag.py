"""Consumer-group lag for the dashboard: every group, cached for a few seconds.

With :meth:`KafkaLag.start` it also refreshes in the background and exports every
group's lag as ``qbridge_consumer_lag_messages{group, topic}`` (the orchestrator
exports only the executors' groups, which it needs for routing).
"""

from __future__ import annotations

from collections.abc import Sequence

from qbridge.bus.lag_monitor import LagMonitor
from qbridge.bus.settings import KafkaSettings
from qbridge.metrics import CONSUMER_LAG
from qbridge.topics import ALL_GROUPS, ConsumerGroup


class KafkaLag(LagMonitor):
    """The shared :class:`~qbridge.bus.lag_monitor.LagMonitor`, set up for the dashboard.

    Calling the instance returns a :class:`~qbridge.bus.lag_monitor.LagSnapshot`; a
    snapshot younger than ``ttl_s`` is reused so page reloads do not hammer the brokers.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        groups: Sequence[ConsumerGroup] = ALL_GROUPS,
        ttl_s: float = 5.0,
        timeout_s: float = 3.0,
    ) -> None:
        """Prepare readers (clients are created on first use)."""
        super().__init__(settings, groups, timeout_s=timeout_s, ttl_s=ttl_s, gauge=CONSUMER_LAG)

    def start(self, interval_s: float = 15.0, retry_s: float | None = None) -> None:
        """Refresh (and export) the lag every ``interval_s``, sooner after a failed read."""
        super().start(interval_s, self.ttl_s if retry_s is None else retry_s)
