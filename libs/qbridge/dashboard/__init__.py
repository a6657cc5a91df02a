"""A small web dashboard served by the system itself (no Grafana needed).

``/dashboard`` shows recent jobs, routes taken, the fallback rate, consumer lag and
quantum vs classical quality per problem class as inline-SVG charts; ``/api/summary``
gives the same data as JSON. Data comes from the results database (PostgreSQL) and,
for lag, from Kafka. See :class:`DashboardApp`.
"""

from qbridge.bus.lag_monitor import LagSnapshot
from qbridge.dashboard.app import DashboardApp, DashboardSettings
from qbridge.dashboard.lag import KafkaLag
from qbridge.dashboard.summary import Thresholds, build_summary

__all__ = [
    "DashboardApp",
    "DashboardSettings",
    "KafkaLag",
    "LagSnapshot",
    "Thresholds",
    "build_summary",
]
