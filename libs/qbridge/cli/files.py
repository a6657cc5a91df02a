"""Problem files: the JSON format of ``examples/*.json`` and its gRPC messages.

A problem file is one JSON object::

    {
      "type": "maxcut",          # maxcut, qubo, ising, knapsack, portfolio, jobshop, classification
      "problem": {"num_nodes": 3, "edges": [[0, 1, 1.0], [1, 2, 2.0]]},
      "options": {"fallback_policy": "auto", "priority": 5},   # optional
      "description": "free text"                 # optional, ignored
    }

``problem`` is the problem model's own form (see examples/README.md for every type);
``options`` are the gateway's job options (fallback_policy, priority, shot_budget, seed,
idempotency_key, correlation_id, tags, timeout_ms, backend).

By default the problem travels as JSON (``Problem.json``) and the gateway validates it,
reporting errors with paths into the file (``problem.json.edges[3][2]``). ``typed=True``
converts it to the typed message instead (canonical shapes only).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qbridge.contracts.gen.gateway.v1 import gateway_pb2 as pb
from qbridge.errors import InvalidProblemError
from qbridge.problems.payload import parse_json

PROBLEM_TYPES = ("maxcut", "qubo", "ising", "knapsack", "portfolio", "jobshop", "classification")
OPTION_KEYS = frozenset(
    {
        "fallback_policy",
        "priority",
        "shot_budget",
        "seed",
        "idempotency_key",
        "correlation_id",
        "tags",
        "timeout_ms",
        "backend",
    }
)


class ProblemFileError(ValueError):
    """The file cannot be read or is not in the documented format."""


def load(path: str | Path) -> dict[str, Any]:
    """Read and check a problem file's envelope (not the problem itself).

    Raises:
        ProblemFileError: Unreadable file, invalid JSON, or a malformed envelope.
    """
    try:
        text = Path(path).read_text() if str(path) != "-" else _stdin()
    except OSError as exc:
        raise ProblemFileError(f"{path}: {exc.strerror or exc}") from exc
    try:
        doc = parse_json(text, field=str(path))
    except InvalidProblemError as exc:  # invalid JSON, or nested absurdly deep
        raise ProblemFileError(str(exc)) from exc
    if not isinstance(doc, dict):
        raise ProblemFileError(f"{path}: must be a JSON object with 'type' and 'problem'")
    unknown = set(doc) - {"type", "problem", "options", "description"}
    if unknown:
        raise ProblemFileError(f"{path}: unknown keys {sorted(unknown)}")
    if doc.get("type") not in PROBLEM_TYPES:
        raise ProblemFileError(
            f"{path}: 'type' must be one of {', '.join(PROBLEM_TYPES)}, got {doc.get('type')!r}"
        )
    if not isinstance(doc.get("problem"), dict):
        raise ProblemFileError(f"{path}: 'problem' must be a JSON object")
    options = doc.get("options", {})
    if not isinstance(options, dict):
        raise ProblemFileError(f"{path}: 'options' must be a JSON object")
    bad = set(options) - OPTION_KEYS
    if bad:
        raise ProblemFileError(
            f"{path}: unknown options {sorted(bad)} (allowed: {', '.join(sorted(OPTION_KEYS))})"
        )
    return doc


def _stdin() -> str:
    import sys

    return sys.stdin.read()


def problem_message(doc: Mapping[str, Any], *, typed: bool = False) -> pb.Problem:
    """The ``Problem`` message of a loaded file.

    Raises:
        ProblemFileError: ``typed`` and the problem is not in its canonical shape.
    """
    kind = str(doc["type"])
    data = doc["problem"]
    if not typed:
        return pb.Problem(json=pb.JsonProblem(type=kind, json=json.dumps(data)))
    try:
        return _typed(kind, data)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ProblemFileError(
            f"cannot send this {kind} problem as a typed message ({exc!r}); "
            "send it as JSON (without --typed) to get the gateway's validation"
        ) from exc


def _typed(kind: str, d: Mapping[str, Any]) -> pb.Problem:
    if kind == "maxcut":
        edges = [pb.WeightedEdge(u=int(u), v=int(v), weight=float(w)) for u, v, w in d["edges"]]
        return pb.Problem(maxcut=pb.MaxCut(num_nodes=int(d["num_nodes"]), edges=edges))
    if kind == "qubo":
        n = int(d["num_variables"])
        return pb.Problem(
            qubo=pb.Qubo(
                num_variables=n,
                linear=[float(v) for v in d.get("linear", [0.0] * n)],
                quadratic=[
                    pb.QuadraticTerm(i=int(i), j=int(j), value=float(v))
                    for i, j, v in d.get("quadratic", [])
                ],
                offset=float(d.get("offset", 0.0)),
            )
        )
    if kind == "ising":
        return pb.Problem(
            ising=pb.Ising(
                h=[float(v) for v in d["h"]],
                couplings=[
                    pb.QuadraticTerm(i=int(i), j=int(j), value=float(v))
                    for i, j, v in d.get("J", [])
                ],
                offset=float(d.get("offset", 0.0)),
            )
        )
    if kind == "knapsack":
        return pb.Problem(
            knapsack=pb.Knapsack(
                values=[float(v) for v in d["values"]],
                weights=[int(w) for w in d["weights"]],
                capacity=int(d["capacity"]),
            )
        )
    if kind == "portfolio":
        msg = pb.Portfolio(
            expected_returns=[float(v) for v in d["expected_returns"]],
            covariance=[pb.Row(values=[float(v) for v in row]) for row in d["covariance"]],
            budget=int(d["budget"]),
        )
        if "risk_aversion" in d:
            msg.risk_aversion = float(d["risk_aversion"])
        return pb.Problem(portfolio=msg)
    if kind == "jobshop":
        return pb.Problem(
            jobshop=pb.JobShop(
                jobs=[
                    pb.JobShop.Job(
                        operations=[
                            pb.JobShop.Operation(machine=int(m), duration=int(du)) for m, du in job
                        ]
                    )
                    for job in d["jobs"]
                ]
            )
        )
    raise ValueError(f"unknown problem type {kind!r}")


def options_message(options: Mapping[str, Any]) -> pb.JobOptions:
    """The ``JobOptions`` message of a file's (possibly overridden) options.

    Raises:
        ProblemFileError: An option of the wrong JSON type.
    """
    msg = pb.JobOptions()
    try:
        for key in ("idempotency_key", "fallback_policy", "correlation_id", "backend"):
            if options.get(key) is not None:
                setattr(msg, key, str(options[key]))
        for key in ("priority", "shot_budget", "seed", "timeout_ms"):
            value = options.get(key)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ProblemFileError(f"option {key} must be an integer, got {value!r}")
                setattr(msg, key, value)
        tags = options.get("tags") or {}
        if not isinstance(tags, dict):
            raise ProblemFileError("option tags must be an object of strings")
        msg.tags.update({str(k): str(v) for k, v in tags.items()})
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ProblemFileError):
            raise
        raise ProblemFileError(f"invalid options: {exc}") from exc
    return msg
