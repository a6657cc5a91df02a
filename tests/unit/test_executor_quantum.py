"""The quantum executor's domain: backend/solver cache, failure injection, settings."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from qbridge.contracts.convert import problem_from_avro
from qbridge.errors import BackendUnavailableError, ConfigurationError
from qbridge.executor.worker import execute
from qbridge.solvers.quantum import QaoaSettings, QuantumBackend, make_backend
from quantum_executor.config import QuantumSettings
from quantum_executor.solvers import FaultInjection, QuantumSolvers

FAST = QaoaSettings(p=1, maxiter=5, initial_candidates=4)
MAXCUT = {
    "num_nodes": 4,
    "edges": [
        {"u": 0, "v": 1, "weight": 1.0},
        {"u": 1, "v": 2, "weight": 2.0},
        {"u": 2, "v": 3, "weight": 1.0},
        {"u": 0, "v": 3, "weight": 3.0},
        {"u": 0, "v": 2, "weight": 0.5},
    ],
}


def work_item(backend: str = "aer_statevector", **overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    item: dict[str, Any] = {
        "work_id": "job-q:1:quantum",
        "job_id": "job-q",
        "attempt": 1,
        "route": "quantum",
        "backend": backend,
        "tenant": "acme",
        "problem_type": "maxcut",
        "problem": MAXCUT,
        "time_limit_ms": 10_000,
        "shots": 512,
        "seed": 5,
        "top_n": 3,
        "priority": 5,
        "deadline_at": now + timedelta(seconds=30),
        "correlation_id": "corr-q",
        "enqueued_at": now,
    }
    item.update(overrides)
    return item


class RecordingFactory:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, **options: Any) -> QuantumBackend:
        self.calls.append((name, options))
        return make_backend(name, **options)


def test_backends_and_solvers_are_built_once_per_process() -> None:
    factory = RecordingFactory()
    solvers = QuantumSolvers(["aer_statevector"], FAST, backend_factory=factory)
    a = solvers.for_item(work_item())
    b = solvers.for_item(work_item())
    assert a is b
    assert factory.calls == [("aer_statevector", {})]


def test_backend_options_are_passed_to_the_factory() -> None:
    factory = RecordingFactory()
    solvers = QuantumSolvers(
        ["aer_statevector"],
        FAST,
        backend_options={"aer_statevector": {"optimization_level": 2, "max_qubits": 10}},
        backend_factory=factory,
    )
    solver = solvers.solver("aer_statevector")
    assert factory.calls == [("aer_statevector", {"optimization_level": 2, "max_qubits": 10})]
    assert solver.backend.max_qubits == 10


def test_unserved_backend_is_unavailable() -> None:
    solvers = QuantumSolvers(["aer_statevector"], FAST)
    with pytest.raises(BackendUnavailableError, match="not served"):
        solvers.for_item(work_item("ibm_runtime"))
    with pytest.raises(BackendUnavailableError):
        solvers.for_item(work_item(""))


def test_misconfigured_backend_is_unavailable_not_a_crash() -> None:
    def broken(name: str, **options: Any) -> QuantumBackend:
        raise ConfigurationError("bad options")

    solvers = QuantumSolvers(["aer_statevector"], FAST, backend_factory=broken)
    _, error = execute(work_item(), solvers.for_item, datetime.now(UTC))
    assert error["error"]["error_class"] == "backend_unavailable"
    assert "misconfigured" in error["error"]["message"]


def test_fault_options_only_for_affected_backends() -> None:
    faults = FaultInjection(mode="transient", times=2, backends=frozenset({"aer_mps"}))
    assert faults.options_for("aer_statevector") == {}
    assert faults.options_for("aer_mps") == {
        "fail_with": "transient",
        "fail_on": "any",
        "fail_after": 0,
        "fail_times": 2,
        "slow_s": 2.0,
    }
    assert FaultInjection().options_for("aer_mps") == {}
    assert FaultInjection(mode="slow").options_for("anything")["fail_with"] == "slow"


def _brute_force(problem_type: str, problem: dict[str, Any]) -> float:
    p = problem_from_avro(problem_type, problem)
    return max(p.evaluate(b).objective for b in itertools.product((0, 1), repeat=p.num_variables))


def test_qaoa_through_execute() -> None:
    solvers = QuantumSolvers(["aer_statevector"], FAST)
    started, ok = execute(work_item(), solvers.for_item, datetime.now(UTC))
    assert started["status"] == "started"
    assert ok["status"] == "ok", ok["error"]
    assert ok["route"] == "quantum"
    assert ok["solution"]["objective"] == _brute_force("maxcut", MAXCUT)
    prov = ok["provenance"]
    assert prov["solver"] == "qaoa"
    assert prov["backend"] == "aer_statevector"
    assert prov["seed"] == 5
    assert prov["circuit_width"] == 4
    assert prov["cache_hit"] in (True, False)
    assert ok["quality"]["confidence"] is not None


@pytest.mark.parametrize(
    ("mode", "extra", "error_class"),
    [
        ("transient", {}, "transient"),
        ("unavailable", {}, "backend_unavailable"),
        ("slow", {"slow_s": 1.0}, "over_budget"),
    ],
)
def test_failure_injection_becomes_error_outcomes(
    mode: str, extra: dict[str, Any], error_class: str
) -> None:
    solvers = QuantumSolvers(["aer_statevector"], FAST, faults=FaultInjection(mode=mode, **extra))
    item = work_item(time_limit_ms=500)  # "slow": one call takes longer than the limit
    started, error = execute(item, solvers.for_item, datetime.now(UTC))
    assert started["status"] == "started"
    assert error["status"] == "error"
    assert error["error"]["error_class"] == error_class


def test_transient_failures_recover_after_fail_times() -> None:
    solvers = QuantumSolvers(["aer_statevector"], FAST, faults=FaultInjection("transient", times=1))
    _, first = execute(work_item(), solvers.for_item, datetime.now(UTC))
    _, second = execute(work_item(), solvers.for_item, datetime.now(UTC))  # same backend
    assert first["error"]["error_class"] == "transient"
    assert second["status"] == "ok"


def test_prewarm_builds_and_skips_faulty_backends() -> None:
    factory = RecordingFactory()
    solvers = QuantumSolvers(
        ["aer_statevector", "aer_mps"],
        FAST,
        faults=FaultInjection("unavailable", backends=frozenset({"aer_mps"})),
        backend_factory=factory,
    )
    solvers.prewarm(["aer_statevector", "aer_mps", "not-served"])  # never raises
    assert [name for name, _ in factory.calls] == ["aer_statevector", "aer_mps"]
    # The faulty backend's counters were not used by the warm-up.
    backend = solvers.solver("aer_mps").backend
    assert getattr(backend, "failures", None) == 0


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QBRIDGE_QUANTUM_FAIL_MODE", "transient")
    monkeypatch.setenv("QBRIDGE_QUANTUM_FAIL_TIMES", "3")
    monkeypatch.setenv("QBRIDGE_QUANTUM_FAIL_BACKENDS", '["aer_statevector"]')
    monkeypatch.setenv("QBRIDGE_BACKENDS", '["aer_statevector", "ibm_runtime"]')
    monkeypatch.setenv("QBRIDGE_BACKEND_OPTIONS", '{"ibm_runtime": {"backend_name": "ibm_x"}}')
    monkeypatch.setenv("QBRIDGE_QAOA_P", "3")
    monkeypatch.setenv("QBRIDGE_QAOA_MAXITER", "10")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    s = QuantumSettings()
    assert s.faults() == FaultInjection(
        mode="transient", times=3, backends=frozenset({"aer_statevector"})
    )
    assert s.backends == ["aer_statevector", "ibm_runtime"]
    assert s.backend_options == {"ibm_runtime": {"backend_name": "ibm_x"}}
    assert s.qaoa().p == 3 and s.qaoa().maxiter == 10
    assert s.kafka.bootstrap_servers == "broker:9092"
    monkeypatch.setenv("QBRIDGE_QUANTUM_FAIL_MODE", "")
    monkeypatch.setenv("QBRIDGE_QUANTUM_FAIL_TIMES", "")
    assert QuantumSettings().faults().mode is None
    monkeypatch.setenv("QBRIDGE_QUANTUM_FAIL_MODE", "explode")
    with pytest.raises(ValueError):
        QuantumSettings()
