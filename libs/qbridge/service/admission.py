"""Admission control for a gRPC front door: what is refused with RESOURCE_EXHAUSTED.

Plain Python (no gRPC): the mechanisms a server checks before it takes work, each
raising :class:`OverloadedError` with a retry hint:

* :class:`TenantRateLimiter`: per-tenant token buckets, one per method, cheap enough
  to charge before a request is parsed;
* :class:`SolveGate`: calls admitted at once, adapted (AIMD) to whether admitted calls
  answer by their deadline, so a refusal is immediate instead of every call being late;
* :class:`TenantSlots`: places held at once (calls in flight, open streams), overall
  and per tenant, so one tenant cannot take them all.

The knobs of the first two are :class:`AdmissionSettings` (environment).

The gateway is their user: the metrics keep their ``qbridge_gateway_`` names (its README
and existing dashboards refer to them).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client import Counter, Gauge
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from qbridge.errors import ErrorClass, QBridgeError

logger = logging.getLogger(__name__)

REJECTIONS = Counter(
    "qbridge_gateway_rejections_total",
    "Calls answered RESOURCE_EXHAUSTED, by reason.",
    ["reason"],
)
SOLVE_LIMIT = Gauge(
    "qbridge_gateway_solve_limit", "Solve calls the gateway admits at once now (adaptive)."
)


class OverloadedError(QBridgeError):
    """The server will not take this work now (RESOURCE_EXHAUSTED).

    Attributes:
        retry_after_ms: Suggested wait before retrying.
    """

    error_class = ErrorClass.TRANSIENT

    def __init__(self, message: str, retry_after_ms: int = 500) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class TenantSlots:
    """Places held at once, overall and per tenant.

    A refusal is counted in ``qbridge_gateway_rejections_total`` with the reason
    ``reason`` (all places taken) or ``tenant_<reason>`` (the tenant's share taken).
    """

    def __init__(
        self,
        what: str,
        limit: int,
        tenant_limit: int = 0,
        *,
        reason: str,
        retry_after_ms: int = 100,
        gauge: Gauge | None = None,
    ) -> None:
        """Create the slots.

        Args:
            what: What a place is, for refusal messages (``WatchJob streams open``).
            limit: Places at most, all tenants together.
            tenant_limit: Places per tenant at most (0: no per-tenant limit).
            reason: Rejection reason label (see the class docstring).
            retry_after_ms: Retry hint of a refusal.
            gauge: Set to the number of places held whenever it changes.
        """
        self.what = what
        self.limit = limit
        self.tenant_limit = tenant_limit
        self.reason = reason
        self.retry_after_ms = retry_after_ms
        self.gauge = gauge
        self._lock = threading.Lock()
        self._held = 0
        self._by_tenant: dict[str, int] = {}

    @property
    def held(self) -> int:
        """Places held now."""
        return self._held

    @contextlib.contextmanager
    def hold(self, tenant: str) -> Iterator[None]:
        """Hold one place of ``tenant`` while the block runs.

        Raises:
            OverloadedError: No place is free (overall or for the tenant).
        """
        with self._lock:
            if self._held >= self.limit:
                REJECTIONS.labels(self.reason).inc()
                raise OverloadedError(
                    f"{self._held} {self.what} (limit {self.limit})", self.retry_after_ms
                )
            mine = self._by_tenant.get(tenant, 0)
            if self.tenant_limit and mine >= self.tenant_limit:
                REJECTIONS.labels(f"tenant_{self.reason}").inc()
                raise OverloadedError(
                    f"tenant has {mine} {self.what} (limit {self.tenant_limit})",
                    self.retry_after_ms,
                )
            self._held += 1
            self._by_tenant[tenant] = mine + 1
            self._report()
        try:
            yield
        finally:
            with self._lock:
                self._held -= 1
                left = self._by_tenant.get(tenant, 1) - 1
                if left:
                    self._by_tenant[tenant] = left
                else:
                    self._by_tenant.pop(tenant, None)
                self._report()

    def _report(self) -> None:
        if self.gauge is not None:
            self.gauge.set(self._held)


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
        """Create the gate (see :class:`AdmissionSettings` ``solve_*`` for the knobs)."""
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


class AdmissionSettings(BaseSettings):
    """The tenants' call rates and the Solve gate (environment, prefix ``QBRIDGE_``).

    Attributes:
        max_inflight_solves: Solve calls in flight at most (RESOURCE_EXHAUSTED beyond; the
            adaptive gate's ceiling).
        tenant_rates: Calls per second per tenant by method (token buckets checked before a
            request is read; a method left out or at 0 is not limited), e.g.
            ``QBRIDGE_TENANT_RATES='{"Solve": 20, "Submit": 50}'``.
        tenant_burst_s: Seconds of calls a tenant's bucket holds (burst = rate x this).
        solve_min_limit: Solve calls admitted at once at least (the adaptive gate's floor).
        solve_initial_limit: Solve calls admitted at once at start.
        solve_late_ms: An admitted Solve answered later than its deadline + this cuts the
            number admitted at once (multiplicatively); on-time answers raise it again.
    """

    model_config = SettingsConfigDict(env_prefix="QBRIDGE_", extra="ignore")

    max_inflight_solves: int = Field(default=64, ge=1)
    tenant_rates: dict[str, float] = Field(
        default_factory=lambda: {
            "Solve": 50.0,
            "Submit": 100.0,
            "GetJob": 200.0,
            "ListJobs": 20.0,
            "WatchJob": 20.0,
        }
    )
    tenant_burst_s: float = Field(default=2.0, gt=0)
    solve_min_limit: int = Field(default=2, ge=1)
    solve_initial_limit: int = Field(default=8, ge=1)
    solve_late_ms: float = Field(default=5.0, ge=0)

    def rate_limiter(self) -> TenantRateLimiter:
        """Token buckets at :attr:`tenant_rates`."""
        return TenantRateLimiter(self.tenant_rates, burst_s=self.tenant_burst_s)

    def solve_gate(self) -> SolveGate:
        """The adaptive gate, between :attr:`solve_min_limit` and :attr:`max_inflight_solves`."""
        return SolveGate(
            initial=self.solve_initial_limit,
            min_limit=self.solve_min_limit,
            max_limit=self.max_inflight_solves,
            late_ms=self.solve_late_ms,
        )
