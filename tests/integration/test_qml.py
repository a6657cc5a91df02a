"""End to end on the real local stack (every service, Kafka, PostgreSQL): QML and mitigation.

* A classification job: the quantum route runs the fidelity quantum kernel and
  the RBF baseline on the same folds; the classical route (``classical_only``)
  runs the baseline alone. Both answers are stored by results-sink with the
  accuracies in the provenance.
* Zero-noise extrapolation switched on in the quantum executor: a QAOA job of a
  tenant routed to ``fake_noisy`` is stored with the ZNE settings and shot cost.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devstack.pipeline import Pipeline
from qbridge.bus import BusProducer
from qbridge.problems import Classification, MaxCut
from tests.integration.test_pipeline import _restart_with, pipeline, producer, submit

__all__ = ["pipeline", "producer"]  # module-scoped fixtures shared with test_pipeline

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = Classification.from_dict(
    json.loads((ROOT / "examples" / "classification.json").read_text())["problem"]
)


def submit_example(producer: BusProducer, **over: Any) -> str:
    # Own idempotency key: both routes get the same dataset, which would otherwise dedupe.
    key = f"e2e-cls-{uuid.uuid4().hex[:10]}"
    return submit(
        producer,
        EXAMPLE,
        idempotency_key=key,
        correlation_id=key,
        timeout_ms=60_000,
        seed=7,
        **over,
    )


def stored(dsn: str, corr: str, pipeline: Pipeline, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with psycopg.connect(dsn) as conn:
            row = conn.execute(
                "SELECT j.problem_type, s.status, s.route, s.objective, s.assignment,"
                " s.provenance FROM jobs j JOIN solutions s USING (job_id)"
                " WHERE j.correlation_id = %s",
                (corr,),
            ).fetchone()
        if row is not None:
            keys = ("problem_type", "status", "route", "objective", "assignment", "provenance")
            return dict(zip(keys, row, strict=True))
        time.sleep(0.5)
    logs = "\n".join(f"--- {s.name}\n{s.tail(15)}" for s in pipeline.services.values())
    raise AssertionError(f"{corr} not final after {timeout}s\n{logs}")


def test_classification_job_records_quantum_and_baseline_accuracies(
    pipeline: Pipeline, producer: BusProducer, database_url: str
) -> None:
    quantum = submit_example(producer)
    classical = submit_example(producer, fallback_policy="classical_only")
    q = stored(database_url, quantum, pipeline)
    c = stored(database_url, classical, pipeline)

    assert (q["problem_type"], q["status"], q["route"]) == (
        "classification",
        "succeeded",
        "quantum",
    )
    info = q["provenance"]["settings"]["classification"]
    assert q["provenance"]["solver"] == "quantum-kernel"
    assert q["objective"] == pytest.approx(info["quantum_accuracy"])
    assert info["accuracy_gap"] == pytest.approx(
        info["quantum_accuracy"] - info["baseline_accuracy"]
    )
    # The stored answer is re-checkable: out-of-fold predictions scored on the labels.
    assert EXAMPLE.evaluate(list(q["assignment"])).objective == pytest.approx(q["objective"])
    assert 0.5 < info["baseline_accuracy"] <= 1.0 and 0.5 < info["quantum_accuracy"] <= 1.0

    assert (c["status"], c["route"]) == ("succeeded", "classical")
    baseline = c["provenance"]["settings"]["classification"]
    assert c["provenance"]["solver"] == "rbf-svc"
    assert baseline["quantum_accuracy"] is None
    # Same seed, same folds: the classical route reproduces the quantum job's baseline.
    assert baseline["folds"] == info["folds"]
    assert baseline["baseline_accuracy"] == pytest.approx(info["baseline_accuracy"])


def test_zne_on_the_noisy_backend_is_recorded_in_the_stored_provenance(
    pipeline: Pipeline, producer: BusProducer, database_url: str
) -> None:
    _restart_with(
        pipeline, "orchestrator", QBRIDGE_TENANT_BACKENDS=json.dumps({"zne": "fake_noisy"})
    )
    _restart_with(pipeline, "quantum-executor", QBRIDGE_QAOA_ZNE_SCALE_FACTORS="[1, 3]")
    try:
        problem = MaxCut.from_dict(
            {"num_nodes": 4, "edges": [[0, 1, 1.0], [1, 2, 2.0], [2, 3, 1.0], [0, 3, 1.5]]}
        )
        corr = submit(producer, problem, tenant="zne", shot_budget=4096, timeout_ms=60_000)
        row = stored(database_url, corr, pipeline)
    finally:
        _restart_with(pipeline, "orchestrator", QBRIDGE_TENANT_BACKENDS=None)
        _restart_with(pipeline, "quantum-executor", QBRIDGE_QAOA_ZNE_SCALE_FACTORS=None)
    assert (row["status"], row["route"]) == ("succeeded", "quantum"), row
    prov = row["provenance"]
    assert prov["backend"] == "fake_noisy"
    settings = prov["settings"]
    assert settings["zne"] == {"scale_factors": [1, 3], "extrapolation": "richardson"}
    assert settings["zne_applied"] is True
    # Every optimizer estimate also ran folded (scale 3), with the executor's 256 eval shots.
    assert settings["zne_shots"] == settings["parameter_sets_evaluated"] * 256 > 0
    assert prov["shots"] == 2 * settings["zne_shots"] + settings["final_shots"]
