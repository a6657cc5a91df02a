"""The one job-status vocabulary and the degrade-reason codes (qbridge.status)."""

from __future__ import annotations

import json

import pytest

from qbridge.errors import ErrorClass
from qbridge.status import (
    ANSWERED_STATUSES,
    FINAL_STATUSES,
    OUTCOME_STATUSES,
    DegradeReason,
    JobStatus,
    is_final,
)


def test_statuses_are_their_wire_strings() -> None:
    assert JobStatus("degraded") is JobStatus.DEGRADED
    assert json.dumps({"s": JobStatus.SUCCEEDED}) == '{"s": "succeeded"}'
    assert f"{JobStatus.EXPIRED}" == "expired"


@pytest.mark.parametrize(
    ("status", "final", "answered"),
    [
        ("submitted", False, False),
        ("accepted", False, False),
        ("routed", False, False),
        ("running", False, False),
        ("succeeded", True, True),
        ("degraded", True, True),
        ("failed", True, False),
        ("expired", True, False),
        ("rejected", True, False),
    ],
)
def test_final_and_answered(status: str, final: bool, answered: bool) -> None:
    assert JobStatus(status).final is final and is_final(status) is final
    assert JobStatus(status).answered is answered
    assert (status in ANSWERED_STATUSES) is answered


def test_the_orchestrator_decides_every_final_status_but_rejected() -> None:
    assert {JobStatus.REJECTED} == FINAL_STATUSES - OUTCOME_STATUSES
    assert not is_final(None) and not is_final("unknown")


@pytest.mark.parametrize(
    ("error_class", "code"),
    [
        (ErrorClass.TRANSIENT, "transient"),
        ("backend_unavailable", "unavailable"),
        ("over_budget", "over_budget"),
        ("invalid_input", "quantum_error"),
        ("defect", "quantum_error"),
        ("something new", "quantum_error"),
    ],
)
def test_reason_for_a_quantum_error_class(error_class: str, code: str) -> None:
    assert DegradeReason.for_error_class(error_class) == code
