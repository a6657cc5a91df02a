"""The orchestrator stores Avro values (envelopes, states, headers) as JSON text."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator.store import to_json_text


def test_avro_values_become_json_with_epoch_milliseconds_and_hex() -> None:
    env: dict[str, Any] = {
        "job_id": "j-1",
        "priority": 5,
        "shot_budget": None,
        "flag": True,
        "deadline_at": datetime(2026, 12, 3, 16, 0, 0, 123000, tzinfo=UTC),
        "problem": {
            "num_nodes": 3,
            "edges": [{"u": 0, "v": 1, "weight": 1.5}, {"u": 1, "v": 2, "weight": -0.5}],
        },
        "pair": (1, "x"),
        "blob": b"\x00\xff",
        "tags": {"a": "b"},
    }
    back = json.loads(to_json_text(env))
    assert back["deadline_at"] == 1796313600123
    assert back["blob"] == "00ff"
    assert back["pair"] == [1, "x"]
    assert back["problem"] == env["problem"]
    assert {k: v for k, v in back.items() if k not in ("deadline_at", "blob", "pair")} == {
        k: v for k, v in env.items() if k not in ("deadline_at", "blob", "pair")
    }


def test_values_json_cannot_hold_are_refused() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        to_json_text({"x": object()})
