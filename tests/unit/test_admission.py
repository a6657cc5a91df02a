"""Admission mechanisms without a server: token buckets, the adaptive gate, tenant slots."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from qbridge.service.admission import (
    AdmissionSettings,
    OverloadedError,
    SolveGate,
    TenantRateLimiter,
    TenantSlots,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_refills_at_its_rate_and_says_when_to_retry() -> None:
    clock = Clock()
    rl = TenantRateLimiter({"Submit": 2.0, "GetJob": 0}, burst_s=1.5, clock=clock)
    rl.take("a", "Submit")
    rl.take("a", "Submit")
    rl.take("a", "Submit")  # burst 3
    with pytest.raises(OverloadedError) as err:
        rl.take("a", "Submit")
    assert err.value.retry_after_ms == 500  # one token at 2/s
    rl.take("b", "Submit")  # another tenant has its own bucket
    for _ in range(100):
        rl.take("a", "GetJob")  # rate 0: unlimited
        rl.take("a", "ListJobs")  # not listed: unlimited
    clock.now += 0.25
    with pytest.raises(OverloadedError) as err:
        rl.take("a", "Submit")
    assert err.value.retry_after_ms == 250
    clock.now += 0.25
    rl.take("a", "Submit")
    clock.now += 3600  # refills up to the burst only
    for _ in range(3):
        rl.take("a", "Submit")
    with pytest.raises(OverloadedError):
        rl.take("a", "Submit")


def test_token_buckets_are_pruned_when_refilled() -> None:
    clock = Clock()
    rl = TenantRateLimiter({"GetJob": 1.0}, clock=clock, max_buckets=3)
    for t in "abc":
        rl.take(t, "GetJob")
    clock.now += 10
    rl.take("d", "GetJob")
    assert len(rl._buckets) == 1


# --- the Solve gate ---------------------------------------------------------------------


def test_solve_gate_refuses_beyond_its_limit_and_adapts_to_lateness() -> None:
    clock = Clock()
    gate = SolveGate(initial=3, min_limit=1, max_limit=4, late_ms=5, cooldown_s=1, clock=clock)
    for _ in range(3):
        gate.enter()
    with pytest.raises(OverloadedError) as err:
        gate.enter()
    assert err.value.retry_after_ms > 0 and "capacity" in str(err.value)
    gate.leave(duration_s=0.2, lateness_ms=-30)  # on time: limit 3 -> 3.33
    assert gate.limit == 3 and gate.inflight == 2
    gate.leave(duration_s=0.2, lateness_ms=40)  # late: cut to 70%
    assert gate.limit == 2
    gate.leave(duration_s=0.2, lateness_ms=40)  # within the cool-down: no second cut
    assert gate.limit == 2 and gate.inflight == 0
    clock.now += 2
    for _ in range(5):
        gate.enter()
        gate.leave(duration_s=0.2, lateness_ms=99)
        clock.now += 2
    assert gate.limit == 1  # never below the floor
    for _ in range(50):
        gate.enter()
        gate.leave(duration_s=0.2, lateness_ms=0)
    assert gate.limit == 4  # back up, never above the ceiling
    gate.enter()
    gate.leave(duration_s=0.2, lateness_ms=None)  # not a timed answer: no change
    assert gate.limit == 4


def rejections(reason: str) -> float:
    return REGISTRY.get_sample_value("qbridge_gateway_rejections_total", {"reason": reason}) or 0.0


def test_tenant_slots_bound_all_tenants_and_each_tenant() -> None:
    slots = TenantSlots("streams open", 2, 1, reason="probe", retry_after_ms=700)
    before, before_tenant = rejections("probe"), rejections("tenant_probe")
    with slots.hold("a"):
        with (
            pytest.raises(OverloadedError, match="tenant has 1 streams open") as err,
            slots.hold("a"),
        ):
            pass
        assert err.value.retry_after_ms == 700
        with slots.hold("b"):
            assert slots.held == 2
            with pytest.raises(OverloadedError, match=r"^2 streams open"), slots.hold("c"):
                pass
    assert slots.held == 0 and slots._by_tenant == {}  # every place given back
    assert rejections("probe") == before + 1 and rejections("tenant_probe") == before_tenant + 1
    with pytest.raises(RuntimeError), slots.hold("a"):  # given back when the holder fails
        raise RuntimeError("boom")
    assert slots.held == 0


def test_settings_build_the_buckets_and_the_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QBRIDGE_TENANT_RATES", '{"Solve": 4, "Submit": 0}')
    monkeypatch.setenv("QBRIDGE_TENANT_BURST_S", "0.5")
    monkeypatch.setenv("QBRIDGE_MAX_INFLIGHT_SOLVES", "6")
    monkeypatch.setenv("QBRIDGE_SOLVE_MIN_LIMIT", "3")
    settings = AdmissionSettings()
    limiter = settings.rate_limiter()
    assert limiter.rates == {"Solve": 4.0} and limiter.burst_s == 0.5  # rate 0: not limited
    gate = settings.solve_gate()
    assert (gate.min_limit, gate.limit, gate.max_limit) == (3, 6, 6)  # initial 8: capped
    monkeypatch.setenv("QBRIDGE_TENANT_BURST_S", "0")
    with pytest.raises(ValidationError):
        AdmissionSettings()
