"""The ``qbridge`` CLI: problem files, the examples, and commands against an in-process gateway."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.jobs import JobFactory
from qbridge.cli.app import main
from qbridge.cli.files import (
    PROBLEM_TYPES,
    ProblemFileError,
    load,
    options_message,
    problem_message,
)
from qbridge.contracts.gateway_messages import TYPED_BRANCHES
from qbridge.problems.limits import Limits
from qbridge.validation.accept import RequestBounds
from tests.unit.test_gateway_server import Gateway

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_there_is_one_valid_example_per_problem_type() -> None:
    files = sorted(EXAMPLES.glob("*.json"))
    assert {f.stem for f in files} == set(PROBLEM_TYPES)
    f = JobFactory(Limits(), RequestBounds())
    for path in files:
        doc = load(path)
        opts = options_message(doc.get("options") or {})
        as_json = f.prepare("t", problem_message(doc), opts, timeout_ms=1000, call="submit")
        assert as_json.problem_type == doc["type"]
        if doc["type"] not in TYPED_BRANCHES:
            continue  # JSON-only types (classification): no typed protobuf message
        typed = f.prepare(
            "t", problem_message(doc, typed=True), opts, timeout_ms=1000, call="submit"
        )
        assert as_json.problem_type == typed.problem_type == doc["type"]
        assert as_json.fingerprint == typed.fingerprint, path.name
    assert (EXAMPLES / "README.md").exists()


def test_file_format_errors(tmp_path: Path) -> None:
    def write(obj: object) -> Path:
        p = tmp_path / "p.json"
        p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
        return p

    for content, fragment in (
        ("{not json", "not valid JSON"),
        ([1, 2], "JSON object"),
        ({"type": "tsp", "problem": {}}, "'type' must be one of"),
        ({"type": "maxcut", "problem": []}, "'problem' must be"),
        ({"type": "maxcut", "problem": {}, "extra": 1}, "unknown keys"),
        ({"type": "maxcut", "problem": {}, "options": {"colour": "red"}}, "unknown options"),
    ):
        with pytest.raises(ProblemFileError, match=fragment):
            load(write(content))
    with pytest.raises(ProblemFileError):
        load(tmp_path / "missing.json")
    with pytest.raises(ProblemFileError, match="typed"):
        problem_message(
            {"type": "maxcut", "problem": {"num_nodes": 2, "edges": [[0, 1]]}}, typed=True
        )
    with pytest.raises(ProblemFileError, match="integer"):
        options_message({"priority": "high"})
    msg = options_message({"priority": 7, "tags": {"a": "b"}, "fallback_policy": "race"})
    assert msg.priority == 7 and msg.tags["a"] == "b" and msg.fallback_policy == "race"


@pytest.fixture
def gw() -> Iterator[Gateway]:
    g = Gateway()
    yield g
    g.stop()


def run(gw: Gateway, *argv: str, key: str = "key-a") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["--target", f"127.0.0.1:{gw.port}", "--api-key", key, *argv], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_solve_submit_and_errors_against_a_gateway(gw: Gateway, tmp_path: Path) -> None:
    code, out, err = run(
        gw, "--json", "solve", str(EXAMPLES / "knapsack.json"), "--deadline-ms", "300"
    )
    assert code == 0, err
    answer = json.loads(out)
    assert answer["source"] == "ANSWER_SOURCE_GATEWAY"
    assert answer["result"]["solution"]["feasible"] is True

    code, out, err = run(
        gw, "solve", str(EXAMPLES / "maxcut.json"), "--deadline-ms", "200", "--typed"
    )
    assert code == 0, err
    assert "answered   by gateway" in out and "objective" in out and "route      classical" in out

    code, out, _ = run(
        gw, "submit", str(EXAMPLES / "jobshop.json"), "--priority", "8", "--tag", "x=y"
    )
    assert code == 0
    job_id = out.strip()
    sent = gw.publisher.published[-1]
    assert sent.job_id == job_id and sent.priority == 8 and sent.request["tags"]["x"] == "y"
    code, out, _ = run(gw, "get", job_id)
    assert code == 0 and "submitted" in out

    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"type": "maxcut", "problem": {"num_nodes": 2, "edges": [[0, 7, 1]]}})
    )
    code, _, err = run(gw, "submit", str(bad))
    assert code == 3
    assert "INVALID_ARGUMENT" in err and "field: problem.json.edges[0]" in err

    code, _, err = run(gw, "get", job_id, key="wrong")
    assert code == 3 and "UNAUTHENTICATED" in err
    code, _, err = run(gw, "get", job_id, key="key-b")
    assert code == 3 and "NOT_FOUND" in err
    code, _, err = run(gw, "submit", str(tmp_path / "nope.json"))
    assert code == 2 and "error:" in err
