"""Fuzz: intake validation accepts or rejects with a typed error, never crashes.

Accepted requests must also yield an envelope that encodes (intake produces it next).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from qbridge.contracts import AvroCodec
from qbridge.errors import QBridgeError
from qbridge.problems import Limits
from qbridge.topics import JOBS_ACCEPTED
from qbridge.validation.accept import accept
from tests.fuzz.recipe import Recipe

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LIMITS = Limits()
_REQUIRED = ("request_id", "tenant", "problem_type", "problem", "created_at")


def _request(r: Recipe) -> dict[str, Any]:
    kind, problem = r.labelled_problem(avro=True)

    def ids() -> str:
        return r.text() if r.chance(10) else r.pick(("req-1", "acme", "tenant-2", "k"))

    req: dict[str, Any] = {
        "request_id": ids(),
        "idempotency_key": None if r.chance(2) else ids(),  # both about half the time
        "tenant": ids(),
        "problem_type": kind,
        "problem": problem,
        "timeout_ms": r.maybe(
            lambda: r.pick((30_000, 100, 3_600_000, 99, 0, -1, 3_600_001, 2**63))
        ),
        "fallback_policy": r.maybe(
            lambda: r.pick(("auto", "race", "quantum_only", "classical_only", "", "x\x00"))
        ),
        "priority": r.maybe(r.small_int),
        "shot_budget": None if r.chance(2) else r.maybe(r.small_int),
        "seed": None if r.chance(2) else r.maybe(r.small_int),
        "correlation_id": None if r.chance(2) else ids(),
        "tags": r.maybe(lambda: {r.text() or "k": r.text() for _ in range(r.below(3))}),
        "created_at": r.maybe(lambda: r.pick((NOW, 1_700_000_000_000, 0, -1))),
    }
    if r.chance(15):
        req.pop(r.pick(_REQUIRED))
    return req


@given(st.binary(max_size=160))
def test_accept_returns_an_encodable_envelope_or_raises_a_typed_error(
    codec: AvroCodec, data: bytes
) -> None:
    request = _request(Recipe(data))
    try:
        envelope = accept(request, NOW, LIMITS)
    except QBridgeError:
        return
    codec.encode(JOBS_ACCEPTED.record, envelope)
