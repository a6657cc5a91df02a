"""The orchestrator's envelope-to-JSON walk gives what a JSON round trip would."""

from __future__ import annotations

import enum
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator.store import to_json_safe


class _Color(enum.StrEnum):
    RED = "red"


def _round_trip(value: Any) -> Any:
    def default(v: Any) -> Any:
        if isinstance(v, datetime):
            return int(v.timestamp() * 1000)
        if isinstance(v, bytes):
            return v.hex()
        raise TypeError(type(v).__name__)

    return json.loads(json.dumps(value, default=default))


def test_envelope_is_converted_as_a_json_round_trip_would() -> None:
    env = {
        "job_id": "j-1",
        "priority": 5,
        "shot_budget": None,
        "flag": True,
        "deadline_at": datetime(2026, 12, 3, 16, 0, 0, 123000, tzinfo=UTC),
        "problem": {
            "num_nodes": 3,
            "edges": [{"u": 0, "v": 1, "weight": 1.5}, {"u": 1, "v": 2, "weight": -0.0}],
        },
        "pair": (1, "x", (2.5, None)),
        "blob": b"\x00\xff",
        "labels": {"a": [datetime(2026, 1, 1, tzinfo=UTC)]},
        "color": _Color.RED,
    }
    got = to_json_safe(env)
    assert got == _round_trip(env)
    assert json.dumps(got) == json.dumps(_round_trip(env))
    assert type(got["color"]) is str
    # A copy: changing the result leaves the input alone.
    got["problem"]["edges"][0]["u"] = 9
    assert env["problem"]["edges"][0]["u"] == 0  # type: ignore[index]


def test_values_json_cannot_hold_are_refused() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        to_json_safe({"x": object()})
