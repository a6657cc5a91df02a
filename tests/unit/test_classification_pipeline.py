"""Classification jobs through the pipeline's domain code (no broker): Avro, intake, executors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from classical_fallback.solvers import ClassicalSolvers
from qbridge.contracts import AvroCodec
from qbridge.contracts.convert import problem_from_avro, problem_to_avro
from qbridge.errors import BackendUnavailableError
from qbridge.executor.worker import execute
from qbridge.problems import Classification
from qbridge.problems.limits import Limits
from qbridge.qml.solvers import KernelBaselineSolver, QuantumKernelSolver
from qbridge.solvers.fallback import last_resort
from qbridge.solvers.quantum.mitigation import ZneSettings
from qbridge.topics import JOBS_ACCEPTED, WORK_QUANTUM
from qbridge.validation.accept import accept
from quantum_executor.config import QuantumSettings
from quantum_executor.solvers import QuantumSolvers

EXAMPLE = json.loads(
    (Path(__file__).resolve().parents[2] / "examples" / "classification.json").read_text()
)["problem"]
NOW = datetime(2026, 12, 3, 9, 0, 0, 123456, tzinfo=UTC)


def request() -> dict[str, Any]:
    return {
        "request_id": "req-c",
        "idempotency_key": None,
        "tenant": "acme",
        "problem_type": "classification",
        "problem": EXAMPLE,
        "timeout_ms": 60_000,
        "fallback_policy": "auto",
        "priority": 5,
        "shot_budget": None,
        "seed": 7,
        "correlation_id": None,
        "tags": {},
        "created_at": NOW,
    }


def work_item(route: str, backend: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "work_id": f"job-c:1:{route}",
        "job_id": "job-c",
        "attempt": 1,
        "route": route,
        "backend": backend,
        "tenant": "acme",
        "problem_type": "classification",
        "problem": EXAMPLE,
        "time_limit_ms": 60_000,
        "shots": 0,
        "seed": 7,
        "top_n": 3,
        "priority": 5,
        "deadline_at": now + timedelta(seconds=60),
        "correlation_id": "corr-c",
        "enqueued_at": now,
    }


def test_avro_branch_round_trips_and_intake_accepts(codec: AvroCodec) -> None:
    problem = Classification.from_dict(EXAMPLE)
    name, record = problem_to_avro(problem)
    assert name == "qbridge.ClassificationProblem"
    assert problem_from_avro("classification", record) == problem
    env = accept(request(), NOW, Limits())
    assert env["num_qubits"] == 4  # one qubit per feature
    assert env["output_shape"] == {"kind": "integer", "length": 50}
    decoded = codec.decode(codec.encode(JOBS_ACCEPTED.record, env)).value
    assert problem_from_avro("classification", decoded["problem"]) == problem


def test_quantum_executor_runs_the_kernel_and_records_both_accuracies(codec: AvroCodec) -> None:
    # The work item as the quantum executor decodes it from Kafka.
    item = work_item("quantum", "aer_statevector")
    wire = {**item, "problem": problem_branch(item)}
    decoded = codec.decode(codec.encode(WORK_QUANTUM.record, wire)).value
    solvers = QuantumSolvers(["aer_statevector"])
    chosen = solvers.for_item(decoded)
    assert isinstance(chosen, QuantumKernelSolver)
    records = execute(decoded, solvers.for_item, datetime.now(UTC))
    assert [r["status"] for r in records] == ["started", "ok"]
    ok = records[-1]
    info = json.loads(ok["provenance"]["settings_json"])["classification"]
    problem = Classification.from_dict(EXAMPLE)
    assert ok["solution"]["objective"] == info["quantum_accuracy"]
    assert ok["solution"]["objective"] == problem.evaluate(ok["solution"]["assignment"]).objective
    assert ok["candidates"][1]["objective"] == info["baseline_accuracy"]
    assert info["accuracy_gap"] == pytest.approx(
        info["quantum_accuracy"] - info["baseline_accuracy"]
    )
    assert ok["provenance"]["solver"] == "quantum-kernel"


def test_quantum_executor_refuses_backends_it_does_not_serve() -> None:
    solvers = QuantumSolvers(["aer_statevector"])
    with pytest.raises(BackendUnavailableError):
        solvers.for_item(work_item("quantum", "ibm_runtime"))


def test_classical_executor_runs_the_baseline_alone() -> None:
    solvers = ClassicalSolvers(["ortools"])
    item = work_item("classical", "ortools")
    assert isinstance(solvers.for_item(item), KernelBaselineSolver)
    ok = execute(item, solvers.for_item, datetime.now(UTC))[-1]
    assert ok["status"] == "ok"
    info = json.loads(ok["provenance"]["settings_json"])["classification"]
    assert info["quantum_accuracy"] is None
    assert ok["solution"]["objective"] == info["baseline_accuracy"]
    assert ok["provenance"]["route"] == "classical"


def test_last_resort_predicts_the_majority_class() -> None:
    problem = Classification.from_dict(
        {"features": [[0.0]] * 5 + [[1.0]] * 3, "labels": [2] * 5 + [9] * 3, "folds": 3}
    )
    best = last_resort(problem, seed=0)
    assert best is not None and best.assignment == (2,) * 8
    assert best.objective == pytest.approx(5 / 8)


def test_executor_settings_enable_zne() -> None:
    assert QuantumSettings().qaoa().zne is None
    settings = QuantumSettings(qaoa_zne_scale_factors=[1, 3], qaoa_zne_extrapolation="linear")
    assert settings.qaoa().zne == ZneSettings((1, 3), "linear")


def problem_branch(item: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name, record = problem_to_avro(Classification.from_dict(item["problem"]))
    return name, record
