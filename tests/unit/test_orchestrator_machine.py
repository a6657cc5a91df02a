"""The orchestrator's routing policy and state machine, without Kafka or a database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator.machine import (
    BackendHealth,
    EmitFinal,
    EmitStatus,
    EmitWork,
    JobState,
    Machine,
    MachineConfig,
)
from orchestrator.policy import (
    CircuitBreaker,
    Decision,
    JobFacts,
    Mode,
    RoutingContext,
    decide,
)
from qbridge.status import DegradeReason, JobStatus

T0 = 1_700_000_000_000


def envelope(**over: Any) -> dict[str, Any]:
    env = {
        "job_id": "job-1",
        "tenant": "acme",
        "problem_type": "maxcut",
        "correlation_id": "c-1",
        "priority": 5,
        "fallback_policy": "auto",
        "seed": 7,
        "shot_budget": 1000,
        "timeout_ms": 10_000,
        "deadline_at": datetime.fromtimestamp((T0 + 10_000) / 1000, UTC),
    }
    env.update(over)
    return env


def always(decision: Decision):  # type: ignore[no-untyped-def]
    return lambda st: decision


QUANTUM = always(Decision(Mode.QUANTUM, "aer_statevector", reason="policy auto"))
CLASSICAL = always(Decision(Mode.CLASSICAL, None, reason="classical-only problem type"))
RACE = always(Decision(Mode.RACE, "aer_statevector", reason="policy race"))


def evaluator(objectives: dict[tuple[int, ...], float], feasible: bool = True):  # type: ignore[no-untyped-def]
    return lambda a: (objectives.get(tuple(a), 0.0), feasible)


def ok(work_id: str, route: str, assignment: list[int], objective: float) -> dict[str, Any]:
    return {
        "work_id": work_id,
        "route": route,
        "status": "ok",
        "solution": {"assignment": assignment, "objective": objective, "feasible": True},
        "candidates": [],
        "quality": None,
        "provenance": {"shots": 100, "cost_units": 1.0},
    }


def err(work_id: str, route: str, cls: str, msg: str = "boom") -> dict[str, Any]:
    return {
        "work_id": work_id,
        "route": route,
        "status": "error",
        "error": {"error_class": cls, "error_type": "X", "message": msg},
    }


def started(work_id: str) -> dict[str, Any]:
    return {"work_id": work_id, "route": "quantum", "status": "started"}


def statuses(effects: list[Any]) -> list[str]:
    return [e.to_status for e in effects if isinstance(e, EmitStatus)]


def final(effects: list[Any]) -> EmitFinal:
    [f] = [e for e in effects if isinstance(e, EmitFinal)]
    return f


@pytest.fixture
def machine() -> Machine:
    return Machine(MachineConfig(quantum_time_share=0.5, finalize_grace_ms=500))


def test_quantum_happy_path_transitions_in_order(machine: Machine) -> None:
    st, eff = machine.on_envelope(envelope(), T0, QUANTUM, "maximize")
    assert statuses(eff) == ["accepted", "routed"]
    [work] = [e for e in eff if isinstance(e, EmitWork)]
    assert work.attempt.work_id == "job-1:1:quantum"
    assert work.attempt.time_limit_ms == 5000  # half of the 10 s budget
    eff = machine.on_outcome(st, started("job-1:1:quantum"), T0 + 10, QUANTUM, evaluator({}))
    assert statuses(eff) == ["running"]
    ev = evaluator({(1, 0, 1): 3.0})
    eff = machine.on_outcome(
        st, ok("job-1:1:quantum", "quantum", [1, 0, 1], 3.0), T0 + 20, QUANTUM, ev
    )
    assert statuses(eff) == ["succeeded"]
    assert final(eff).route == "quantum" and final(eff).reason_code is None
    assert BackendHealth("aer_statevector", True) in eff
    assert st.final and st.seq == 4 and st.timer_ms is None


def test_duplicate_and_late_outcomes_change_nothing(machine: Machine) -> None:
    st, _ = machine.on_envelope(envelope(), T0, QUANTUM, "maximize")
    out = ok("job-1:1:quantum", "quantum", [1], 1.0)
    first = machine.on_outcome(st, out, T0 + 5, QUANTUM, evaluator({(1,): 1.0}))
    assert final(first).status == "succeeded"
    assert machine.on_outcome(st, out, T0 + 6, QUANTUM, evaluator({(1,): 1.0})) == []
    assert machine.on_timer(st, T0 + 60_000, QUANTUM) == []


def test_unavailable_backend_falls_back_to_classical_labelled(machine: Machine) -> None:
    st, _ = machine.on_envelope(envelope(), T0, QUANTUM, "maximize")
    eff = machine.on_outcome(
        st,
        err("job-1:1:quantum", "quantum", "backend_unavailable", "device offline"),
        T0 + 5,
        QUANTUM,
        evaluator({}),
    )
    assert BackendHealth("aer_statevector", False) in eff
    [work] = [e for e in eff if isinstance(e, EmitWork)]
    assert work.attempt.route == "classical" and work.attempt.work_id == "job-1:2:classical"
    eff = machine.on_outcome(
        st,
        ok("job-1:2:classical", "classical", [0, 1], 2.0),
        T0 + 9,
        QUANTUM,
        evaluator({(0, 1): 2.0}),
    )
    f = final(eff)
    assert (f.status, f.route) == ("degraded", "classical")
    assert "backend_unavailable" in f.reason and "device offline" in f.reason
    # The code travels next to the text, on the outcome and on the final transition.
    assert f.reason_code == DegradeReason.QUANTUM_UNAVAILABLE == "unavailable"
    [last] = [e for e in eff if isinstance(e, EmitStatus)]
    assert (last.to_status, last.reason_code) == (JobStatus.DEGRADED, "unavailable")


def test_transient_error_is_retried_after_backoff(machine: Machine) -> None:
    st, _ = machine.on_envelope(envelope(), T0, QUANTUM, "maximize")
    eff = machine.on_outcome(
        st, err("job-1:1:quantum", "quantum", "transient"), T0 + 5, QUANTUM, evaluator({})
    )
    assert eff == []
    assert st.timer_ms == T0 + 5 + 200
    assert machine.on_timer(st, T0 + 100, QUANTUM) == []
    eff = machine.on_timer(st, T0 + 205, QUANTUM)
    [work] = [e for e in eff if isinstance(e, EmitWork)]
    assert work.attempt.route == "quantum" and work.attempt.attempt == 2


def test_slow_quantum_falls_back_when_its_share_of_time_is_used(machine: Machine) -> None:
    st, _ = machine.on_envelope(envelope(), T0, QUANTUM, "maximize")
    assert st.timer_ms == T0 + 5000
    eff = machine.on_timer(st, T0 + 5000, QUANTUM)
    [work] = [e for e in eff if isinstance(e, EmitWork)]
    assert work.attempt.route == "classical"
    assert "quantum did not answer within 5000 ms" in (st.degraded_reason or "")
    assert st.degraded_code == DegradeReason.QUANTUM_TIMEOUT
    [routed] = [e for e in eff if isinstance(e, EmitStatus)]
    assert routed.reason.startswith("classical: fallback:") and routed.reason_code == "timeout"
    # the late quantum answer, if it comes, still counts: best of both wins
    eff = machine.on_outcome(
        st,
        ok("job-1:1:quantum", "quantum", [1, 1], 5.0),
        T0 + 6000,
        QUANTUM,
        evaluator({(1, 1): 5.0}),
    )
    assert final(eff).route == "quantum"


def test_deadline_without_any_answer_expires(machine: Machine) -> None:
    st, _ = machine.on_envelope(envelope(), T0, CLASSICAL, "maximize")
    assert machine.on_timer(st, T0 + 10_499, CLASSICAL) == []
    eff = machine.on_timer(st, T0 + 10_500, CLASSICAL)
    f = final(eff)
    assert f.status == "expired" and f.result is None
    assert statuses(eff) == ["expired"]


def test_race_keeps_the_best_and_records_the_gap(machine: Machine) -> None:
    st, eff = machine.on_envelope(envelope(fallback_policy="race"), T0, RACE, "maximize")
    assert sorted(e.attempt.route for e in eff if isinstance(e, EmitWork)) == [
        "classical",
        "quantum",
    ]
    ev = evaluator({(1, 0): 8.0, (0, 1): 10.0})
    eff = machine.on_outcome(st, ok("job-1:1:quantum", "quantum", [1, 0], 8.0), T0 + 5, RACE, ev)
    assert eff == [BackendHealth("aer_statevector", True)]  # waits for the classical answer
    eff = machine.on_outcome(
        st, ok("job-1:2:classical", "classical", [0, 1], 10.0), T0 + 6, RACE, ev
    )
    f = final(eff)
    assert f.route == "classical" and f.status == "succeeded"
    assert f.gap == pytest.approx(0.2)
    assert f.reason_code is None  # a race answered classically is not a degradation


def test_objective_is_recomputed_not_trusted(machine: Machine) -> None:
    st, _ = machine.on_envelope(envelope(), T0, QUANTUM, "maximize")
    eff = machine.on_outcome(
        st, ok("job-1:1:quantum", "quantum", [1], 999.0), T0 + 5, QUANTUM, evaluator({(1,): 4.0})
    )
    assert final(eff).result["solution"]["objective"] == 4.0  # type: ignore[index]


def test_infeasible_quantum_answer_falls_back(machine: Machine) -> None:
    st, _ = machine.on_envelope(envelope(problem_type="knapsack"), T0, QUANTUM, "maximize")
    eff = machine.on_outcome(
        st,
        ok("job-1:1:quantum", "quantum", [1, 1], 5.0),
        T0 + 5,
        QUANTUM,
        evaluator({(1, 1): 5.0}, feasible=False),
    )
    [work] = [e for e in eff if isinstance(e, EmitWork)]
    assert work.attempt.route == "classical"
    assert st.degraded_reason == "quantum answer infeasible"
    assert st.degraded_code == DegradeReason.QUANTUM_INFEASIBLE


def test_invalid_input_fails_fast(machine: Machine) -> None:
    st, _ = machine.on_envelope(envelope(), T0, CLASSICAL, "maximize")
    eff = machine.on_outcome(
        st,
        err("job-1:1:classical", "classical", "invalid_input", "bad"),
        T0 + 5,
        CLASSICAL,
        evaluator({}),
    )
    assert final(eff).status == "failed"


def test_deferred_admission_is_routed_later(machine: Machine) -> None:
    deferred = always(Decision(Mode.CLASSICAL, None, admit=False, reason="admission paused"))
    st, eff = machine.on_envelope(envelope(priority=1), T0, deferred, "maximize")
    assert statuses(eff) == ["accepted"] and st.pending is not None
    eff = machine.on_timer(st, T0 + 500, CLASSICAL)
    assert [e.attempt.route for e in eff if isinstance(e, EmitWork)] == ["classical"]


def test_state_survives_json_round_trip(machine: Machine) -> None:
    st, _ = machine.on_envelope(envelope(), T0, QUANTUM, "maximize")
    again = JobState.from_json(st.to_json())
    assert again == st


# --- policy -------------------------------------------------------------------------------

FACTS = JobFacts(tenant="acme", fallback_policy="auto", priority=5, num_qubits=10, shots=1000)
CTX = RoutingContext(backend="aer_statevector", backend_max_qubits=24)


@pytest.mark.parametrize(
    ("facts", "ctx", "mode", "degraded", "reason", "code"),
    [
        (FACTS, CTX, Mode.QUANTUM, False, "policy auto", None),
        (
            FACTS.__class__(**{**FACTS.__dict__, "fallback_policy": "race"}),
            CTX,
            Mode.RACE,
            False,
            "race",
            None,
        ),
        (
            FACTS.__class__(**{**FACTS.__dict__, "num_qubits": None}),
            CTX,
            Mode.CLASSICAL,
            False,
            "classical-only",
            None,
        ),
        (
            FACTS.__class__(**{**FACTS.__dict__, "num_qubits": 30}),
            CTX,
            Mode.CLASSICAL,
            True,
            "needs 30 qubits",
            DegradeReason.QUBITS,
        ),
        (
            FACTS,
            RoutingContext("aer_statevector", 24, backend_available=False),
            Mode.CLASSICAL,
            True,
            "circuit breaker",
            DegradeReason.CIRCUIT_OPEN,
        ),
        (
            FACTS,
            RoutingContext("aer_statevector", 24, quantum_lag=50),
            Mode.CLASSICAL,
            True,
            "lag 50 > 20",
            DegradeReason.QUANTUM_LAG,
        ),
        (
            FACTS,
            RoutingContext("aer_statevector", 24, cost_left=0.0),
            Mode.CLASSICAL,
            True,
            "cost quota",
            DegradeReason.QUOTA,
        ),
        (
            FACTS,
            RoutingContext("aer_statevector", 24, shots_left=10),
            Mode.CLASSICAL,
            True,
            "quota",
            DegradeReason.QUOTA,
        ),
        (
            FACTS.__class__(**{**FACTS.__dict__, "fallback_policy": "classical_only"}),
            CTX,
            Mode.CLASSICAL,
            False,
            "classical_only",
            None,
        ),
    ],
)
def test_routing_policy(
    facts: JobFacts,
    ctx: RoutingContext,
    mode: Mode,
    degraded: bool,
    reason: str,
    code: DegradeReason | None,
) -> None:
    d = decide(facts, ctx)
    assert (d.mode, d.degraded, d.admit) == (mode, degraded, True)
    assert reason in d.reason
    assert d.code == code


def test_low_priority_admission_pauses_under_lag() -> None:
    low = JobFacts("acme", "auto", 1, 10, 1000)
    d = decide(low, RoutingContext("aer_statevector", 24, total_lag=500))
    assert not d.admit and "admission paused" in d.reason
    assert d.code == DegradeReason.ADMISSION
    assert decide(FACTS, RoutingContext("aer_statevector", 24, total_lag=500)).admit


def test_circuit_breaker_opens_and_half_opens() -> None:
    b = CircuitBreaker(failures=2, cooldown_s=10)
    b.record_failure("q", now=0)
    assert b.available("q", 0)
    b.record_failure("q", now=1)
    assert not b.available("q", 5)
    assert b.available("q", 11)  # half-open
    b.record_failure("q", now=12)  # one failure re-opens
    assert not b.available("q", 13)
    b.record_success("q")
    assert b.available("q", 13)


def test_job_with_no_answer_is_rescued_before_its_deadline(machine: Machine) -> None:
    st, _ = machine.on_envelope(envelope(), T0, CLASSICAL, "maximize")
    assert st.timer_ms == T0 + 10_000 - 300
    rescued = {
        "solution": {"assignment": [1, 0], "objective": 1.0, "feasible": True},
        "candidates": [],
        "quality": None,
        "provenance": {"solver": "heuristic"},
        "attempt": 1,
    }
    assert machine.on_timer(st, T0 + 9_000, CLASSICAL, lambda: rescued) == []
    eff = machine.on_timer(st, T0 + 9_700, CLASSICAL, lambda: rescued)
    f = final(eff)
    assert (f.status, f.route) == ("degraded", "classical")
    assert "no executor answered" in f.reason and f.at_ms < st.deadline_ms
    assert f.reason_code == DegradeReason.RESCUE


def test_admission_deferred_until_the_deadline_is_near_degrades_with_its_code() -> None:
    machine = Machine(MachineConfig(defer_ms=500))
    paused = always(
        Decision(
            Mode.CLASSICAL,
            None,
            admit=False,
            reason="admission paused: executor lag 300 > 200",
            code=DegradeReason.ADMISSION,
        )
    )
    # 1.4 s left is under 3 deferrals: admitted classically at once, marked degraded.
    env = envelope(deadline_at=datetime.fromtimestamp((T0 + 1_400) / 1000, UTC))
    st, eff = machine.on_envelope(env, T0, paused, "maximize")
    assert [e.attempt.route for e in eff if isinstance(e, EmitWork)] == ["classical"]
    assert st.degraded_code == DegradeReason.ADMISSION
    eff = machine.on_outcome(
        st, ok("job-1:1:classical", "classical", [1], 1.0), T0 + 5, paused, evaluator({(1,): 1.0})
    )
    assert (final(eff).status, final(eff).reason_code) == ("degraded", "admission")


def test_job_state_without_a_degrade_code_finishes_with_other(machine: Machine) -> None:
    """A job persisted before reason codes existed still ends with a bounded code."""
    st, _ = machine.on_envelope(envelope(), T0, CLASSICAL, "maximize")
    data = st.to_json()
    data.pop("degraded_code")
    data["degraded_reason"] = "quantum executor lag 25 > 20"
    old = JobState.from_json(data)
    eff = machine.on_outcome(
        old, ok("job-1:1:classical", "classical", [1], 1.0), T0 + 5, CLASSICAL, evaluator({})
    )
    assert (final(eff).status, final(eff).reason_code) == ("degraded", DegradeReason.OTHER)
