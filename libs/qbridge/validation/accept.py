"""Request validation: a decoded ``ProblemRequest`` becomes an immutable ``JobEnvelope``.

No Kafka here: :func:`accept` takes the decoded request as a dict and returns the
envelope as a dict, or raises a typed :class:`~qbridge.errors.InvalidProblemError`
(invalid input: the consumer dead-letters the message with the reason).

Idempotency: the job id is a uuid5 of ``(tenant, idempotency key)`` and the key
defaults to the fingerprint of the *normalized* problem, so any duplicate request
(same key, or same problem without a key) maps to the same job id, whichever
intake replica sees it and however often it is redelivered. The orchestrator
deduplicates by job id; nothing here depends on in-process state.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from qbridge.contracts.convert import problem_from_avro, problem_to_avro
from qbridge.errors import InvalidProblemError
from qbridge.problems.base import Problem
from qbridge.problems.knapsack import Knapsack, slack_coefficients
from qbridge.problems.limits import Limits, check_limits

FALLBACK_POLICIES = frozenset(
    {"auto", "quantum_preferred", "classical_only", "quantum_only", "race"}
)
"""Allowed values of ``fallback_policy``."""

QUANTUM_REQUIRED_POLICIES = frozenset({"quantum_only"})
"""Policies that cannot be served by a classical-only problem type."""

JOB_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:qbridge:job")
"""Namespace of the deterministic job ids (never change it: ids would change)."""

MAX_SEED = 2**63 - 1

_INTEGER_OUTPUT_KINDS = frozenset({"jobshop", "classification"})
"""Problem types whose solution values are integers (start times, labels), not bits."""


class InvalidRequestError(InvalidProblemError):
    """A request field (not the problem itself) is semantically invalid."""


@dataclass(frozen=True)
class RequestBounds:
    """Bounds on a request's own fields (the problem's size is bounded by ``Limits``).

    Attributes:
        min_timeout_ms: Shortest accepted time budget.
        max_timeout_ms: Longest accepted time budget.
        max_shot_budget: Largest accepted shot budget; ``None`` for no limit.
        max_tags: Most free-form tags per request.
        max_tag_key_chars: Longest tag key.
        max_tag_value_chars: Longest tag value.
        max_id_chars: Longest tenant, request id, idempotency key, correlation id.
    """

    min_timeout_ms: int = 100
    max_timeout_ms: int = 3_600_000
    max_shot_budget: int | None = 100_000_000
    max_tags: int = 64
    max_tag_key_chars: int = 64
    max_tag_value_chars: int = 512
    max_id_chars: int = 256


def job_id_for(tenant: str, idempotency_key: str) -> str:
    """The deterministic job id of ``(tenant, idempotency_key)``."""
    return str(uuid.uuid5(JOB_NAMESPACE, json.dumps([tenant, idempotency_key])))


def seed_from_fingerprint(fingerprint: str) -> int:
    """A reproducible non-negative 31-bit seed (fits every solver's seed type)."""
    return int(fingerprint[:8], 16) & 0x7FFF_FFFF


def output_shape(problem: Problem) -> dict[str, Any]:
    """What a solution of ``problem`` looks like (``qbridge.OutputShape``)."""
    kind = "integer" if problem.kind in _INTEGER_OUTPUT_KINDS else "binary"
    return {"kind": kind, "length": problem.num_variables}


def num_qubits(problem: Problem) -> int | None:
    """Qubits after QUBO encoding, or ``None`` for classical-only types.

    Knapsack is counted without building its dense encoding (items + slack bits).
    """
    if not problem.quantum_encodable:
        return None
    if isinstance(problem, Knapsack):
        return problem.num_variables + len(slack_coefficients(problem.capacity))
    return problem.num_qubits()


# --- field paths --------------------------------------------------------------------------

# The problem model reports paths of its dict form (``edges[3][2]``); callers wrote Avro
# records (``edges[3].weight``). Translate per problem type.
_PATH_RULES: dict[str, tuple[tuple[re.Pattern[str], Any], ...]] = {
    "maxcut": (
        (
            re.compile(r"^edges\[(\d+)\]\[([012])\]"),
            lambda m: _named(m, "edges", "u", "v", "weight"),
        ),
    ),
    "qubo": (
        (
            re.compile(r"^quadratic\[(\d+)\]\[([012])\]"),
            lambda m: _named(m, "quadratic", "i", "j", "value"),
        ),
    ),
    "ising": (
        (
            re.compile(r"^J\[(\d+)\]\[([012])\]"),
            lambda m: _named(m, "couplings", "i", "j", "value"),
        ),
        (re.compile(r"^J\b"), lambda m: "couplings"),
    ),
    "jobshop": (
        (
            re.compile(r"^jobs\[(\d+)\]\[(\d+)\]\[([01])\]"),
            lambda m: f"jobs[{m[1]}][{m[2]}].{('machine', 'duration')[int(m[3])]}",
        ),
    ),
}


def _named(m: re.Match[str], name: str, *fields: str) -> str:
    return f"{name}[{m[1]}].{fields[int(m[2])]}"


def avro_field_path(problem_type: str, field: str | None) -> str:
    """The request-level path of a problem-model field (``problem.edges[3].weight``)."""
    if not field:
        return "problem"
    if field in ("problem", "problem_type"):
        return field
    for pattern, repl in _PATH_RULES.get(problem_type, ()):
        m = pattern.match(field)
        if m:
            field = repl(m) + field[m.end() :]
            break
    return f"problem.{field}"


def _rewrap(exc: InvalidProblemError, problem_type: str) -> InvalidProblemError:
    """The same error type and message, with the field as a request-level path."""
    message = str(exc)
    if exc.field and message.startswith(f"{exc.field}: "):
        message = message[len(exc.field) + 2 :]
    path = avro_field_path(problem_type, exc.field)
    try:
        return type(exc)(message, field=path)
    except TypeError:  # a subclass with another constructor: keep the base type
        return InvalidProblemError(message, field=path)


# --- request checks -----------------------------------------------------------------------


def _bad(field: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(message, field=field)


def _required(request: Mapping[str, Any], name: str) -> Any:
    if name not in request:
        raise _bad(name, "is required")
    return request[name]


def _identifier(value: Any, field: str, bounds: RequestBounds, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _bad(field, f"must be a string, got {type(value).__name__}")
    if not value.strip():
        raise _bad(field, "must not be empty")
    if len(value) > bounds.max_id_chars:
        raise _bad(field, f"has {len(value)} characters, at most {bounds.max_id_chars} allowed")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise _bad(field, "must not contain control characters")
    return value


def _integer(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(field, f"must be an integer, got {value!r}")
    return value


def _timestamp(value: Any, field: str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC)
    raise _bad(field, f"must be a timestamp, got {value!r}")


def _tags(value: Any, bounds: RequestBounds) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _bad("tags", f"must be a map of strings, got {type(value).__name__}")
    if len(value) > bounds.max_tags:
        raise _bad("tags", f"has {len(value)} entries, at most {bounds.max_tags} allowed")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k or len(k) > bounds.max_tag_key_chars:
            raise _bad("tags", f"key {k!r} must be 1..{bounds.max_tag_key_chars} characters")
        if not isinstance(v, str) or len(v) > bounds.max_tag_value_chars:
            raise _bad(f"tags.{k}", f"must be a string of at most {bounds.max_tag_value_chars}")
        # PostgreSQL text cannot hold NUL: such a job could never be stored.
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in k):
            raise _bad("tags", f"key {k!r} must not contain control characters")
        if "\x00" in v:
            raise _bad(f"tags.{k}", "must not contain NUL (\\x00) characters")
        out[k] = v
    return out


@dataclass(frozen=True)
class Accepted:
    """An accepted request: its envelope and the validated problem model.

    Attributes:
        envelope: The ``qbridge.JobEnvelope`` record (see :func:`accept`).
        problem: The normalized problem the envelope carries, so a caller that solves it
            right away (the gateway's local answer) does not validate it a second time.
    """

    envelope: dict[str, Any]
    problem: Problem


def accept(
    request: Mapping[str, Any],
    now: datetime,
    limits: Limits,
    *,
    bounds: RequestBounds | None = None,
    schema_version: int = 0,
) -> dict[str, Any]:
    """Validate, normalize and accept one problem request.

    Args:
        request: The decoded ``qbridge.ProblemRequest`` (latest schema version).
        now: Acceptance time (timezone-aware; naive values are taken as UTC).
        limits: Size limits of the problem.
        bounds: Bounds of the request's own fields (defaults of :class:`RequestBounds`).
        schema_version: Version of the writer's ``ProblemRequest`` schema.

    Returns:
        The ``qbridge.JobEnvelope`` record. The problem is the normalized one (as a
        fastavro ``(record name, record)`` union branch).

    Raises:
        InvalidProblemError: The problem is invalid (``field`` is a request-level path
            such as ``problem.edges[3].weight``).
        ProblemTooLargeError: The problem exceeds a limit.
        InvalidRequestError: A request field is invalid (tenant, priority, timeout...).
    """
    return accept_request(
        request, now, limits, bounds=bounds, schema_version=schema_version
    ).envelope


def accept_request(
    request: Mapping[str, Any],
    now: datetime,
    limits: Limits,
    *,
    bounds: RequestBounds | None = None,
    schema_version: int = 0,
) -> Accepted:
    """:func:`accept`, also returning the validated problem model.

    Raises:
        InvalidProblemError: As :func:`accept`.
    """
    b = bounds or RequestBounds()
    accepted_at = now if now.tzinfo else now.replace(tzinfo=UTC)
    # Avro timestamps are milliseconds: truncate so the envelope survives a round trip.
    accepted_at = accepted_at.replace(microsecond=accepted_at.microsecond // 1000 * 1000)

    request_id = _identifier(_required(request, "request_id"), "request_id", b)
    tenant = _identifier(_required(request, "tenant"), "tenant", b)
    key = _identifier(request.get("idempotency_key"), "idempotency_key", b, optional=True)
    correlation = _identifier(request.get("correlation_id"), "correlation_id", b, optional=True)

    priority = _integer(request.get("priority", 5), "priority")
    if not 0 <= priority <= 9:
        raise _bad("priority", f"must be in 0..9, got {priority}")

    timeout_ms = _integer(request.get("timeout_ms", 30_000), "timeout_ms")
    if not b.min_timeout_ms <= timeout_ms <= b.max_timeout_ms:
        raise _bad(
            "timeout_ms",
            f"must be in {b.min_timeout_ms}..{b.max_timeout_ms} ms, got {timeout_ms}",
        )

    policy = request.get("fallback_policy", "auto")
    if not isinstance(policy, str) or policy not in FALLBACK_POLICIES:
        raise _bad(
            "fallback_policy",
            f"must be one of {', '.join(sorted(FALLBACK_POLICIES))}, got {policy!r}",
        )

    shot_budget = request.get("shot_budget")
    if shot_budget is not None:
        shot_budget = _integer(shot_budget, "shot_budget")
        if shot_budget <= 0:
            raise _bad("shot_budget", f"must be positive, got {shot_budget}")
        if b.max_shot_budget is not None and shot_budget > b.max_shot_budget:
            raise _bad("shot_budget", f"must be <= {b.max_shot_budget}, got {shot_budget}")

    seed = request.get("seed")
    if seed is not None:
        seed = _integer(seed, "seed")
        if not 0 <= seed <= MAX_SEED:
            raise _bad("seed", f"must be in 0..2^63-1, got {seed}")

    tags = _tags(request.get("tags"), b)
    created_at = _timestamp(_required(request, "created_at"), "created_at")

    problem_type = _required(request, "problem_type")
    if not isinstance(problem_type, str):
        raise _bad("problem_type", f"must be a string, got {type(problem_type).__name__}")
    avro_problem = _required(request, "problem")
    if not isinstance(avro_problem, Mapping):
        raise InvalidProblemError("must be a problem record", field="problem")
    try:
        problem = problem_from_avro(problem_type, avro_problem, limits)
        check_limits(problem, limits)
        qubits = num_qubits(problem)
    except InvalidProblemError as exc:
        raise _rewrap(exc, problem_type) from exc
    except (ValueError, OverflowError, ArithmeticError) as exc:  # e.g. a huge number
        raise InvalidProblemError(f"cannot be normalized: {exc}", field="problem") from exc

    if not problem.quantum_encodable and policy in QUANTUM_REQUIRED_POLICIES:
        raise _bad(
            "fallback_policy",
            f"{policy} is impossible: {problem.kind} is a classical-only problem type",
        )

    fingerprint = problem.fingerprint()
    idempotency_key = key if key is not None else fingerprint
    job_id = job_id_for(tenant, idempotency_key)
    deadline_at = accepted_at + timedelta(milliseconds=timeout_ms)
    envelope = {
        "job_id": job_id,
        "idempotency_key": idempotency_key,
        "request_id": request_id,
        "tenant": tenant,
        "problem_type": problem.kind,
        "schema_version": schema_version,
        "problem": problem_to_avro(problem),
        "input_fingerprint": fingerprint,
        "output_shape": output_shape(problem),
        "num_variables": problem.num_variables,
        "num_qubits": qubits,
        "timeout_ms": timeout_ms,
        "deadline_at": deadline_at,
        "fallback_policy": policy,
        "priority": priority,
        "shot_budget": shot_budget,
        "seed": seed if seed is not None else seed_from_fingerprint(fingerprint),
        "correlation_id": correlation or request_id,
        "tags": tags,
        "created_at": created_at,
        "accepted_at": accepted_at,
    }
    return Accepted(envelope, problem)
