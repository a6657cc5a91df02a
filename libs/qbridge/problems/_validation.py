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

MAX_ABS_VALUE = 1e100
"""Largest accepted magnitude of a real coefficient. Far beyond any real data, and small
enough that the sums and products the encodings form (penalties, QUBO terms, objective
values over up to millions of terms) can never overflow to ``inf``."""

MAX_DIMENSION = 1 << 24
"""Hard ceiling of a problem's declared size (nodes, variables, machine ids), whatever
the configured limits: beyond it even allocating one value per variable is unreasonable."""

MAX_EXACT_INTEGER = 1 << 53
"""Ceiling of integer data that is summed (knapsack weights, job durations): sums stay
exact in float64 and far from int64 overflow in the solvers."""


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


def as_int(v: object, where: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (bools and floats rejected), optionally bounded."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise InvalidProblemError(f"must be an integer, got {_short(v)}", field=where)
    i = int(v)
    if minimum is not None and i < minimum:
        raise InvalidProblemError(f"must be >= {minimum}, got {i}", field=where)
    if maximum is not None and i > maximum:
        raise InvalidProblemError(f"must be <= {maximum}, got {i}", field=where)
    return i


def _short(v: object) -> str:
    """``repr`` of a rejected value, cut so an error message stays small."""
    text = repr(v)
    return text if len(text) <= 80 else f"{text[:77]}..."


def as_float(v: object, where: str, *, minimum: float | None = None) -> float:
    """A finite float of magnitude at most :data:`MAX_ABS_VALUE`, optionally bounded below.

    Bools and strings are rejected. ``-0.0`` is normalized to ``0.0`` so that it cannot
    change a fingerprint.
    """
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise InvalidProblemError(f"must be a number, got {_short(v)}", field=where)
    try:
        f = float(v)
    except OverflowError:  # an int beyond the float range
        raise InvalidProblemError(
            f"magnitude must be at most {MAX_ABS_VALUE:g}, got {_short(v)}", field=where
        ) from None
    if not math.isfinite(f):
        raise InvalidProblemError(f"must be finite, got {f}", field=where)
    if abs(f) > MAX_ABS_VALUE:
        raise InvalidProblemError(
            f"magnitude must be at most {MAX_ABS_VALUE:g}, got {f:g}", field=where
        )
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
    checks = _valid_triples if len(seq) > SMALL_TRIPLES else _valid_triples_small
    fast = checks(seq, n, allow_diagonal=allow_diagonal)
    if fast is not None:
        return fast
    # Something is invalid (or unusually typed): the element-wise pass names the field.
    return _triples_elementwise(seq, n, where, allow_diagonal=allow_diagonal)


def _triples_elementwise(
    seq: Sequence[Any], n: int, where: str, *, allow_diagonal: bool
) -> dict[tuple[int, int], float]:
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


SMALL_TRIPLES = 128
"""Up to this many triples, plain valid input is checked in a Python loop: numpy's fixed
cost per call (array building, a dozen reductions, ``unique``) is ~100 us, which
dominates for the small problems of high-rate traffic (``bench/bench_validation.py``)."""


def _valid_triples_small(
    seq: Sequence[Any], n: int, *, allow_diagonal: bool
) -> dict[tuple[int, int], float] | None:
    """:func:`_valid_triples` as one Python loop, for small inputs; same results.

    Accepts exactly the same input (``list``/``tuple`` triples of ``int`` indices and
    ``int``/``float`` values) and returns ``None`` on anything else, so errors and their
    field paths still come from the element-wise pass. Duplicates are summed in input
    order, so results are bit-identical to both other passes.
    """
    merged: dict[tuple[int, int], float] = {}
    for t in seq:
        if type(t) is not list and type(t) is not tuple:
            return None
        if len(t) != 3:
            return None
        i, j, val = t
        if type(i) is not int or type(j) is not int or not (0 <= i < n and 0 <= j < n):
            return None
        if i == j and not allow_diagonal:
            return None
        tv = type(val)
        if tv is not float and tv is not int:
            return None
        try:
            f = float(val)
        except OverflowError:
            return None
        if not abs(f) <= MAX_ABS_VALUE:  # also refuses NaN and infinities
            return None
        key = (i, j) if i <= j else (j, i)
        merged[key] = merged.get(key, 0.0) + f
    return {key: val + 0.0 for key, val in sorted(merged.items()) if val != 0.0}


_INDEX_TYPES = frozenset({int})
_VALUE_TYPES = frozenset({int, float})


def _valid_triples(
    seq: Sequence[Any], n: int, *, allow_diagonal: bool
) -> dict[tuple[int, int], float] | None:
    """:func:`index_triples` in numpy for plain valid input; ``None`` if anything is off.

    Large graphs arrive on latency-critical paths (the gateway validates before it can
    start its local answer), where per-element Python checks cost ~10 us an edge. This
    accepts exactly what the element-wise pass accepts: ``int`` indices (``bool`` is not
    ``int`` here) and ``int``/``float`` values; anything else falls back to it, so errors
    and their field paths come from one place. Duplicate pairs are summed in input order,
    as the element-wise pass does, so results are bit-identical.
    """
    if len(seq) == 0:
        return None
    try:
        arr = np.array(seq, dtype=object)
    except (ValueError, TypeError):
        return None
    if arr.ndim != 2 or arr.shape[1] != 3:
        return None
    if not (
        set(map(type, arr[:, 0])) <= _INDEX_TYPES
        and set(map(type, arr[:, 1])) <= _INDEX_TYPES
        and set(map(type, arr[:, 2])) <= _VALUE_TYPES
    ):
        return None
    try:
        i = arr[:, 0].astype(np.int64)
        j = arr[:, 1].astype(np.int64)
        val = arr[:, 2].astype(np.float64)
    except (OverflowError, ValueError):
        return None
    if (i < 0).any() or (j < 0).any() or (i >= n).any() or (j >= n).any():
        return None
    if not (np.isfinite(val).all() and (np.abs(val) <= MAX_ABS_VALUE).all()):
        return None
    if not allow_diagonal and (i == j).any():
        return None
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    keys, inverse = np.unique(lo * n + hi, return_inverse=True)
    sums = np.bincount(inverse, weights=val, minlength=len(keys)) + 0.0
    keep = sums != 0.0
    kept = keys[keep]
    return dict(
        zip(
            zip((kept // n).tolist(), (kept % n).tolist(), strict=True),
            sums[keep].tolist(),
            strict=True,
        )
    )


_BITS = frozenset((0, 1))


def check_binary_assignment(assignment: Sequence[int], n: int) -> tuple[int, ...]:
    """Validate a 0/1 assignment of length ``n`` and return it as a tuple of ints."""
    # Candidates are tuples of plain ints: checked by one set operation, no copy.
    # (True == 1 passes the set test, so the element types are checked too.)
    if (
        type(assignment) is tuple
        and len(assignment) == n
        and _BITS.issuperset(assignment)
        and all(type(b) is int for b in assignment)
    ):
        return assignment
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
