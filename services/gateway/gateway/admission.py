"""The gateway's admission policy: Solve calls in flight, and executor lag.

The refusals checked before a request is read (per-tenant token buckets, the adaptive
Solve gate) are run by the guard (:mod:`gateway.guard`) with the mechanisms of
:mod:`qbridge.service.admission`. Once a request is parsed:

* Solve calls in flight, overall and per tenant, are bounded (each holds a thread and
  a hedge);
* executor lag (committed offsets vs high watermarks of the executors' consumer
  groups, read by the shared :class:`~qbridge.bus.lag_monitor.LagMonitor` like the
  orchestrator does) above a threshold refuses
  low-priority work, and far above it refuses every Submit: the pipeline would only
  queue it. A normal-priority Solve is still taken under lag: the orchestrator degrades
  it to classical and the gateway's own answer bounds its latency.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

from prometheus_client import Gauge

from qbridge.service.admission import REJECTIONS, OverloadedError, TenantSlots
from qbridge.topics import CLASSICAL_FALLBACK_GROUP, QUANTUM_EXECUTOR_GROUP, ConsumerGroup

logger = logging.getLogger(__name__)

INFLIGHT = Gauge("qbridge_gateway_inflight_solves", "Solve calls in flight.")

EXECUTOR_GROUPS: tuple[ConsumerGroup, ...] = (QUANTUM_EXECUTOR_GROUP, CLASSICAL_FALLBACK_GROUP)


class Admission:
    """Decides whether a call is taken."""

    def __init__(
        self,
        *,
        max_inflight: int,
        tenant_max_inflight: int,
        low_priority_below: int,
        reject_low_priority_lag: int,
        reject_submit_lag: int,
        lag: Callable[[], int | None] = lambda: None,
    ) -> None:
        """Create the admission policy (see the gateway settings for the knobs)."""
        self.low_priority_below = low_priority_below
        self.reject_low_priority_lag = reject_low_priority_lag
        self.reject_submit_lag = reject_submit_lag
        self.lag = lag
        self.solves = TenantSlots(
            "Solve calls in flight",
            max_inflight,
            tenant_max_inflight,
            reason="inflight",
            gauge=INFLIGHT,
        )

    @property
    def inflight(self) -> int:
        """Solve calls in flight."""
        return self.solves.held

    def _check_lag(self, priority: int, *, submit: bool) -> None:
        lag = self.lag()
        if lag is None:
            return
        if priority < self.low_priority_below and lag > self.reject_low_priority_lag:
            REJECTIONS.labels("lag_low_priority").inc()
            raise OverloadedError(
                f"executor lag {lag} > {self.reject_low_priority_lag}: low-priority work "
                f"(priority {priority} < {self.low_priority_below}) is not taken now",
                retry_after_ms=2000,
            )
        if submit and lag > self.reject_submit_lag:
            REJECTIONS.labels("lag").inc()
            raise OverloadedError(
                f"executor lag {lag} > {self.reject_submit_lag}: no new jobs taken now",
                retry_after_ms=5000,
            )

    def check_submit(self, priority: int) -> None:
        """Raise :class:`OverloadedError` if a Submit of ``priority`` is refused."""
        self._check_lag(priority, submit=True)

    @contextlib.contextmanager
    def solve_slot(self, tenant: str, priority: int) -> Iterator[None]:
        """Hold one in-flight Solve slot (raises :class:`OverloadedError` if none is free)."""
        self._check_lag(priority, submit=False)
        with self.solves.hold(tenant):
            yield
