"""Typed WorkItem / SolverOutcome records survive the real Avro codec unchanged."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from qbridge.contracts import AvroCodec, default_registry
from qbridge.contracts.records import (
    ErrorInfo,
    OutcomeStatus,
    SolverOutcome,
    WorkItem,
    to_utc,
)
from qbridge.errors import CodecError
from qbridge.topics import SOLVER_OUTCOMES, WORK_QUANTUM

NOW = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
MAXCUT = {"num_nodes": 2, "edges": [{"u": 0, "v": 1, "weight": 1.5}]}
ITEM = WorkItem(
    work_id="job-1:1:quantum",
    job_id="job-1",
    attempt=1,
    route="quantum",
    backend="aer_statevector",
    tenant="acme",
    problem_type="maxcut",
    problem=("qbridge.MaxCutProblem", MAXCUT),
    time_limit_ms=5000,
    shots=0,
    seed=7,
    priority=5,
    deadline_at=NOW + timedelta(seconds=10),
    correlation_id="c-1",
    enqueued_at=NOW,
)
SOLUTION = {"assignment": [1, 0], "objective": 1.5, "feasible": True, "frequency": None}


@pytest.fixture(scope="module")
def codec() -> AvroCodec:
    return AvroCodec(default_registry())


def test_work_item_round_trip(codec: AvroCodec) -> None:
    decoded = codec.decode(codec.encode(WORK_QUANTUM.record, ITEM.to_avro())).value
    back = WorkItem.from_avro(decoded)
    # The union branch comes back as the plain record; everything else is equal.
    assert back == replace(ITEM, problem=MAXCUT)
    assert back.top_n == 5  # the schema default


@pytest.mark.parametrize(
    "outcome",
    [
        SolverOutcome.for_item(ITEM, OutcomeStatus.STARTED, NOW),
        SolverOutcome.for_item(
            ITEM,
            OutcomeStatus.ERROR,
            NOW,
            error=ErrorInfo("transient", "TransientSolverError", "busy"),
        ),
        SolverOutcome.for_item(
            ITEM, OutcomeStatus.OK, NOW, solution=SOLUTION, candidates=(SOLUTION, SOLUTION)
        ),
    ],
)
def test_solver_outcome_round_trip(codec: AvroCodec, outcome: SolverOutcome) -> None:
    decoded = codec.decode(codec.encode(SOLVER_OUTCOMES.record, outcome.to_avro())).value
    assert SolverOutcome.from_avro(decoded) == outcome
    assert decoded["status"] == outcome.status == outcome.status.value


def test_outcome_copies_the_item_and_keeps_milliseconds() -> None:
    o = SolverOutcome.for_item(ITEM, OutcomeStatus.STARTED, NOW.replace(microsecond=678999))
    assert (o.work_id, o.job_id, o.attempt, o.route, o.tenant, o.correlation_id) == (
        "job-1:1:quantum",
        "job-1",
        1,
        "quantum",
        "acme",
        "c-1",
    )
    assert o.produced_at.microsecond == 678000


def test_bad_records_are_codec_errors() -> None:
    record = ITEM.to_avro()
    del record["tenant"]
    with pytest.raises(CodecError, match="WorkItem"):
        WorkItem.from_avro(record)
    bad = {**SolverOutcome.for_item(ITEM, OutcomeStatus.OK, NOW).to_avro(), "status": "done"}
    with pytest.raises(CodecError, match="'done'"):
        SolverOutcome.from_avro(bad)


def test_timestamps_from_epoch_millis_or_naive_datetimes() -> None:
    assert to_utc(1_700_000_000_000) == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert to_utc(datetime(2026, 1, 1)).tzinfo is UTC
