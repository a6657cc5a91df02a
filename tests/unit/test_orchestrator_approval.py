"""The approval gate: policy rules and the awaiting_approval path of the state machine."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator.machine import EmitFinal, EmitStatus, EmitWork, JobState, Machine, MachineConfig
from orchestrator.policy import (
    ApprovalPolicy,
    Decision,
    JobFacts,
    Mode,
    approval_hold,
    estimated_cost_units,
)
from qbridge.status import DegradeReason, JobStatus

T0 = 1_700_000_000_000
HELD = Decision(Mode.QUANTUM, "aer_statevector", reason="policy auto", hold="tenant acme")
RACE_HELD = Decision(Mode.RACE, "aer_statevector", reason="policy race", hold="tenant acme")


def envelope() -> dict[str, Any]:
    return {
        "job_id": "job-1",
        "tenant": "acme",
        "problem_type": "maxcut",
        "correlation_id": "c-1",
        "priority": 5,
        "fallback_policy": "auto",
        "seed": 7,
        "shot_budget": 1000,
        "timeout_ms": 100_000,
        "deadline_at": datetime.fromtimestamp((T0 + 100_000) / 1000, UTC),
    }


def statuses(effects: list[Any]) -> list[str]:
    return [e.to_status for e in effects if isinstance(e, EmitStatus)]


def works(effects: list[Any]) -> list[str]:
    return [e.attempt.route for e in effects if isinstance(e, EmitWork)]


def held(machine: Machine, decision: Decision = HELD) -> JobState:
    st, eff = machine.on_envelope(envelope(), T0, lambda _: decision, "maximize")
    assert statuses(eff) == ["accepted", "awaiting_approval"]
    assert works(eff) == []  # no quantum attempt before approval
    assert st.status == JobStatus.AWAITING_APPROVAL
    return st


def make(**cfg: Any) -> Machine:
    return Machine(MachineConfig(approval_timeout_ms=30_000, **cfg))


def test_approval_dispatches_the_quantum_attempt() -> None:
    m = make()
    st = held(m)
    eff = m.on_approval(st, "approve", "bob@acme", "ok", T0 + 1000)
    assert statuses(eff) == ["routed"] and works(eff) == ["quantum"]
    assert st.approval is not None
    assert st.approval["reviewer"] == "bob@acme" and st.approval["decided_ms"] == T0 + 1000
    # The first decision wins: a later reject changes nothing.
    assert m.on_approval(st, "reject", "eve@acme", "", T0 + 2000) == []


def test_approved_race_dispatches_both_routes() -> None:
    m = make()
    st = held(m, RACE_HELD)
    eff = m.on_approval(st, "approve", "bob", "", T0 + 10)
    assert works(eff) == ["quantum", "classical"]


def test_reject_answers_classically_with_its_code() -> None:
    m = make()
    st = held(m)
    eff = m.on_approval(st, "reject", "bob", "too costly", T0 + 10)
    assert works(eff) == ["classical"]
    assert st.degraded_code == DegradeReason.APPROVAL_REJECTED
    assert st.degraded_reason == "rejected by bob: too costly"


def test_reject_can_fail_the_job() -> None:
    m = make(approval_reject_action="fail")
    st = held(m)
    eff = m.on_approval(st, "reject", "bob", "no", T0 + 10)
    [fin] = [e for e in eff if isinstance(e, EmitFinal)]
    assert fin.status == JobStatus.FAILED and "rejected by bob" in fin.reason
    assert works(eff) == []


@pytest.mark.parametrize(
    ("action", "expect_work", "expect_status"),
    [("classical", ["classical"], "routed"), ("expire", [], "expired")],
)
def test_timeout_takes_the_configured_action(
    action: str, expect_work: list[str], expect_status: str
) -> None:
    m = make(approval_timeout_action=action)
    st = held(m)
    assert st.timer_ms == T0 + 30_000
    assert m.on_timer(st, T0 + 29_000, lambda _: HELD) == []
    eff = m.on_timer(st, T0 + 30_000, lambda _: HELD)
    assert works(eff) == expect_work and statuses(eff) == [expect_status]
    assert st.approval is not None and st.approval["decision"] == "timeout"
    if action == "classical":
        assert st.degraded_code == DegradeReason.APPROVAL_TIMEOUT
    # A decision after the timeout is ignored.
    assert m.on_approval(st, "approve", "bob", "", T0 + 31_000) == []


def test_wait_is_capped_at_half_the_remaining_budget() -> None:
    m = Machine(MachineConfig(approval_timeout_ms=10_000_000))
    st = held(m)
    assert st.pending is not None and st.pending["at_ms"] == T0 + 50_000


def test_held_state_survives_json_round_trip() -> None:
    m = make()
    st = held(m)
    back = JobState.from_json(st.to_json())
    eff = m.on_approval(back, "approve", "bob", "", T0 + 10)
    assert works(eff) == ["quantum"]


def facts(**over: Any) -> JobFacts:
    base: dict[str, Any] = {
        "tenant": "acme",
        "fallback_policy": "auto",
        "priority": 5,
        "num_qubits": 10,
        "shots": 1000,
    }
    base.update(over)
    return JobFacts(**base)


def test_policy_rules() -> None:
    none = ApprovalPolicy()
    assert approval_hold(facts(), "maxcut", "aer_statevector", none) is None
    by_tenant = ApprovalPolicy(tenants=frozenset({"acme"}))
    assert approval_hold(facts(), "maxcut", "x", by_tenant) == "tenant acme needs approval"
    assert approval_hold(facts(tenant="other"), "maxcut", "x", by_tenant) is None
    by_type = ApprovalPolicy(problem_types=frozenset({"portfolio"}))
    assert approval_hold(facts(), "portfolio", "x", by_type) is not None
    assert approval_hold(facts(), "maxcut", "x", by_type) is None
    premium = ApprovalPolicy(premium_backends=frozenset({"ibm_real"}))
    assert approval_hold(facts(), "maxcut", "ibm_real", premium) is not None
    costly = ApprovalPolicy(min_cost_units=10.0, cost_per_qubit_shot=0.001)
    assert estimated_cost_units(facts(), costly) == pytest.approx(10.0)
    assert approval_hold(facts(), "maxcut", "x", costly) is not None
    assert approval_hold(facts(shots=999), "maxcut", "x", costly) is None
