"""Small validation helpers shared by the problem types.

Every helper raises :class:`InvalidProblemError` with the dotted field path of
the offending value, so a rejection tells the caller exactly what to fix.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from qbridge.errors import InvalidProblemError


def check_payload(
    data: object, *, required: Iterable[str], optional: Iterable[str] = ()
) -> Mapping[str, Any]:
    """Check that ``data`` is a mapping with exactly the allowed keys.

    Unknown keys are rejected rather than ignored: a typo such as ``"edge"``
    would otherwise silently produce a different (empty) problem.

    Raises:
        InvalidProblemError: Not a mapping, a required key missing, or an unknown key.
    """
    if not isinstance(data, Mapping):
        raise InvalidProblemError(f"payload must be an object, got {type(data).__name__}")
    req = list(required)
    allowed = set(req) | set(optional)
    for key in req:
        if key not in data:
            raise InvalidProblemError("is required", field=key)
    for key in data:
        if key not in allowed:
            raise InvalidProblemError(
                f"unknown field (allowed: {', '.join(sorted(allowed))})", field=str(key)
            )
    return data


def as_int(v: object, where: str, *, minimum: int | None = None) -> int:
    """An integer (bools and floats rejected), optionally bounded below."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise InvalidProblemError(f"must be an integer, got {v!r}", field=where)
    i = int(v)
    if minimum is not None and i < minimum:
        raise InvalidProblemError(f"must be >= {minimum}, got {i}", field=where)
    return i


def as_float(v: object, where: str, *, minimum: float | None = None) -> float:
    """A finite float (bools and strings rejected), optionally bounded below.

    ``-0.0`` is normalized to ``0.0`` so that it cannot change a fingerprint.
    """
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise InvalidProblemError(f"must be a number, got {v!r}", field=where)
    f = float(v)
    if not math.isfinite(f):
        raise InvalidProblemError(f"must be finite, got {f}", field=where)
    if minimum is not None and f < minimum:
        raise InvalidProblemError(f"must be >= {minimum}, got {f}", field=where)
    return f + 0.0


def as_index(v: object, n: int, where: str) -> int:
    """An integer index in ``0..n-1``."""
    i = as_int(v, where)
    if not 0 <= i < n:
        raise InvalidProblemError(f"index {i} out of range 0..{n - 1}", field=where)
    return i


def as_sequence(v: object, where: str, *, length: int | None = None) -> Sequence[Any]:
    """A list-like value (strings and mappings rejected), optionally of a given length."""
    if isinstance(v, (str, bytes, Mapping)) or not isinstance(v, (Sequence, np.ndarray)):
        raise InvalidProblemError(f"must be a list, got {type(v).__name__}", field=where)
    if length is not None and len(v) != length:
        raise InvalidProblemError(f"has {len(v)} entries, expected {length}", field=where)
    return v  # type: ignore[return-value]


def as_float_list(v: object, where: str, *, length: int | None = None) -> tuple[float, ...]:
    """A list of finite floats."""
    seq = as_sequence(v, where, length=length)
    return tuple(as_float(x, f"{where}[{k}]") for k, x in enumerate(seq))


def index_triples(
    v: object, n: int, where: str, *, allow_diagonal: bool
) -> dict[tuple[int, int], float]:
    """Parse ``[[i, j, value], ...]`` into ``{(min, max): summed value}``, zero sums dropped.

    Args:
        v: The raw list of triples.
        n: Number of indices (``0..n-1`` valid).
        where: Field path for errors.
        allow_diagonal: If False, ``i == j`` is rejected; otherwise kept as ``(i, i)``.
    """
    seq = as_sequence(v, where)
    merged: dict[tuple[int, int], float] = {}
    for k, t in enumerate(seq):
        item = f"{where}[{k}]"
        triple = as_sequence(t, item, length=3)
        i = as_index(triple[0], n, f"{item}[0]")
        j = as_index(triple[1], n, f"{item}[1]")
        val = as_float(triple[2], f"{item}[2]")
        if i == j and not allow_diagonal:
            raise InvalidProblemError(f"self-loop on node {i} is not allowed", field=item)
        key = (i, j) if i <= j else (j, i)
        merged[key] = merged.get(key, 0.0) + val
    return {key: val + 0.0 for key, val in sorted(merged.items()) if val != 0.0}


def check_binary_assignment(assignment: Sequence[int], n: int) -> tuple[int, ...]:
    """Validate a 0/1 assignment of length ``n`` and return it as a tuple of ints."""
    if len(assignment) != n:
        raise InvalidProblemError(f"has {len(assignment)} values, expected {n}", field="assignment")
    out = []
    for k, b in enumerate(assignment):
        if isinstance(b, bool):
            b = int(b)
        if not isinstance(b, (int, np.integer)) or int(b) not in (0, 1):
            raise InvalidProblemError(f"must be 0 or 1, got {b!r}", field=f"assignment[{k}]")
        out.append(int(b))
    return tuple(out)
