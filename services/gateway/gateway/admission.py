"""Admission control: what the gateway refuses with RESOURCE_EXHAUSTED, and executor lag.

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
import threading
from collections.abc import Callable, Iterator

from prometheus_client import Counter, Gauge

from qbridge.errors import ErrorClass, QBridgeError
from qbridge.topics import CLASSICAL_FALLBACK_GROUP, QUANTUM_EXECUTOR_GROUP, ConsumerGroup

logger = logging.getLogger(__name__)

REJECTIONS = Counter(
    "qbridge_gateway_rejections_total",
    "Calls answered RESOURCE_EXHAUSTED, by reason.",
    ["reason"],
)
INFLIGHT = Gauge("qbridge_gateway_inflight_solves", "Solve calls in flight.")

EXECUTOR_GROUPS: tuple[ConsumerGroup, ...] = (QUANTUM_EXECUTOR_GROUP, CLASSICAL_FALLBACK_GROUP)


class OverloadedError(QBridgeError):
    """The gateway will not take this work now (RESOURCE_EXHAUSTED).

    Attributes:
        retry_after_ms: Suggested wait before retrying.
    """

    error_class = ErrorClass.TRANSIENT

    def __init__(self, message: str, retry_after_ms: int = 500) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


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
        self.max_inflight = max_inflight
        self.tenant_max_inflight = tenant_max_inflight
        self.low_priority_below = low_priority_below
        self.reject_low_priority_lag = reject_low_priority_lag
        self.reject_submit_lag = reject_submit_lag
        self.lag = lag
        self._lock = threading.Lock()
        self._inflight = 0
        self._by_tenant: dict[str, int] = {}

    @property
    def inflight(self) -> int:
        """Solve calls in flight."""
        return self._inflight

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
        with self._lock:
            if self._inflight >= self.max_inflight:
                REJECTIONS.labels("inflight").inc()
                raise OverloadedError(
                    f"{self._inflight} Solve calls in flight (limit {self.max_inflight})",
                    retry_after_ms=100,
                )
            mine = self._by_tenant.get(tenant, 0)
            if self.tenant_max_inflight and mine >= self.tenant_max_inflight:
                REJECTIONS.labels("tenant_inflight").inc()
                raise OverloadedError(
                    f"tenant has {mine} Solve calls in flight (limit {self.tenant_max_inflight})",
                    retry_after_ms=100,
                )
            self._inflight += 1
            self._by_tenant[tenant] = mine + 1
            INFLIGHT.set(self._inflight)
        try:
            yield
        finally:
            with self._lock:
                self._inflight -= 1
                left = self._by_tenant.get(tenant, 1) - 1
                if left:
                    self._by_tenant[tenant] = left
                else:
                    self._by_tenant.pop(tenant, None)
                INFLIGHT.set(self._inflight)
