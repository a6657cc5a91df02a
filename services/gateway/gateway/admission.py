"""Admission control: what the gateway refuses with RESOURCE_EXHAUSTED, and executor lag.

* per-tenant token buckets on every call (:class:`TenantRateLimiter`), checked before
  the request is parsed;
* Solve calls at once, adapted to whether admitted calls answer by their deadline
  (:class:`SolveGate`), also checked before parsing so a refusal costs microseconds;
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
import math
import threading
import time
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
SOLVE_LIMIT = Gauge(
    "qbridge_gateway_solve_limit", "Solve calls the gateway admits at once now (adaptive)."
)

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


class TenantRateLimiter:
    """Per-tenant token buckets, one per (tenant, method).

    A bucket holds up to ``rate * burst_s`` tokens and refills at ``rate`` per second;
    each call takes one. An empty bucket refuses the call with the time until the next
    token as the retry hint. Methods without a rate (or rate 0) are not limited.
    """

    def __init__(
        self,
        rates: dict[str, float],
        *,
        burst_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = 100_000,
    ) -> None:
        """Create the limiter.

        Args:
            rates: Calls per second per tenant, by method name (``Solve``, ``Submit``...).
            burst_s: Seconds of calls a bucket can hold (burst = rate * burst_s, >= 1).
            clock: Monotonic seconds.
            max_buckets: Buckets kept at most (the oldest full ones are dropped first).
        """
        self.rates = {m: float(r) for m, r in rates.items() if r and r > 0}
        self.burst_s = burst_s
        self.clock = clock
        self.max_buckets = max_buckets
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}

    def take(self, tenant: str, method: str) -> None:
        """Take one token of ``tenant``'s ``method`` bucket.

        Raises:
            OverloadedError: The bucket is empty (``retry_after_ms`` until a token).
        """
        rate = self.rates.get(method)
        if rate is None:
            return
        capacity = max(1.0, rate * self.burst_s)
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get((tenant, method), (capacity, now))
            tokens = min(capacity, tokens + (now - at) * rate)
            if tokens < 1.0:
                self._buckets[(tenant, method)] = (tokens, now)
                wait_ms = max(1, math.ceil((1.0 - tokens) / rate * 1000))
                REJECTIONS.labels("tenant_rate").inc()
                raise OverloadedError(
                    f"tenant rate limit for {method}: {rate:g} calls/s (burst {capacity:g})",
                    retry_after_ms=wait_ms,
                )
            self._buckets[(tenant, method)] = (tokens - 1.0, now)
            if len(self._buckets) > self.max_buckets:
                self._prune(now)

    def _prune(self, now: float) -> None:
        """Forget buckets that have refilled (a fresh bucket is the same as a full one)."""
        for k, (tokens, at) in list(self._buckets.items()):
            rate = self.rates[k[1]]
            if tokens + (now - at) * rate >= max(1.0, rate * self.burst_s):
                del self._buckets[k]


class SolveGate:
    """How many Solve calls the gateway takes at once, adapted to how late they answer.

    Each Solve holds CPU and a local solver slot until its deadline; past the machine's
    capacity every admitted call gets late together. The gate admits a call only while
    fewer than :attr:`limit` are in flight, and refuses the rest at once (before their
    request is even parsed). The limit adapts (AIMD): a call answered later than its
    deadline + ``late_ms`` cuts it by ``decrease`` (at most once per ``cooldown_s``), an
    on-time call raises it by ``1 / limit``; it stays within ``[min_limit, max_limit]``.
    """

    def __init__(
        self,
        *,
        initial: int,
        min_limit: int,
        max_limit: int,
        late_ms: float = 5.0,
        decrease: float = 0.7,
        cooldown_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Create the gate (see the gateway settings ``solve_*`` for the knobs)."""
        self.min_limit = max(1, min_limit)
        self.max_limit = max(self.min_limit, max_limit)
        self._limit = float(min(max(initial, self.min_limit), self.max_limit))
        self.late_ms = late_ms
        self.decrease = decrease
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._lock = threading.Lock()
        self._inflight = 0
        self._last_cut = -math.inf
        self._service_s = 0.0

    @property
    def limit(self) -> int:
        """Solve calls admitted at once now."""
        return int(self._limit)

    @property
    def inflight(self) -> int:
        """Solve calls holding the gate."""
        return self._inflight

    def enter(self) -> None:
        """Take a place.

        Raises:
            OverloadedError: The gate is full (retry hint: the typical call duration).
        """
        with self._lock:
            if self._inflight >= int(self._limit):
                REJECTIONS.labels("solve_capacity").inc()
                retry = max(10, min(5000, round(self._service_s * 1000) or 100))
                raise OverloadedError(
                    f"{self._inflight} Solve calls in flight: at capacity ({int(self._limit)}) "
                    "for answers by their deadlines",
                    retry_after_ms=retry,
                )
            self._inflight += 1
            SOLVE_LIMIT.set(self._limit)

    def leave(self, *, duration_s: float, lateness_ms: float | None) -> None:
        """Give the place back; ``lateness_ms`` past the deadline (None: not a timed answer)."""
        now = self.clock()
        with self._lock:
            self._inflight -= 1
            self._service_s = (
                duration_s if not self._service_s else (0.9 * self._service_s + 0.1 * duration_s)
            )
            if lateness_ms is None:
                return
            if lateness_ms > self.late_ms:
                if now - self._last_cut >= self.cooldown_s:
                    self._limit = max(float(self.min_limit), self._limit * self.decrease)
                    self._last_cut = now
                    logger.info(
                        "Solve answered %.1f ms late: admitting at most %d at once",
                        lateness_ms,
                        int(self._limit),
                    )
            else:
                self._limit = min(float(self.max_limit), self._limit + 1.0 / self._limit)
            SOLVE_LIMIT.set(self._limit)
