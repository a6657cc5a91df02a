"""Problem payloads given as JSON text: parsed with a bounded nesting depth, typed errors.

Python's ``json`` module recurses once per nesting level, so a hostile document of a
few kilobytes (``[[[[...]]]]``) raises ``RecursionError`` deep inside the parser. Every
problem payload is at most 4 levels deep (job shop: jobs, job, operation, pair), so the
depth is measured first, in one vectorized pass, and anything deeper is refused.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import numpy as np

from qbridge.errors import InvalidProblemError

logger = logging.getLogger(__name__)

MAX_JSON_DEPTH = 32
"""Deepest accepted nesting of a JSON problem payload (real ones need 4)."""

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_DEPTH = np.zeros(256, dtype=np.int8)
_DEPTH[[ord("["), ord("{")]] = 1
_DEPTH[[ord("]"), ord("}")]] = -1


def json_depth(text: str | bytes) -> int:
    """The deepest nesting of brackets in a JSON text (brackets inside strings ignored)."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    structure = _STRING.sub(b"", raw)
    if not structure:
        return 0
    steps = _DEPTH[np.frombuffer(structure, dtype=np.uint8)].astype(np.int64)
    return int(np.cumsum(steps).max(initial=0))


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a finite number")


def parse_json(text: str | bytes, field: str = "json", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse a JSON problem payload.

    Args:
        text: The JSON text.
        field: Field path reported in errors.
        max_depth: Deepest accepted nesting.

    Returns:
        The parsed value.

    Raises:
        InvalidProblemError: Not valid JSON, ``NaN``/``Infinity`` used, or nested deeper
            than ``max_depth``.
    """
    depth = json_depth(text)
    if depth > max_depth:
        raise InvalidProblemError(
            f"is nested {depth} levels deep, at most {max_depth} allowed", field=field
        )
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # RecursionError: unbalanced edge cases
        raise InvalidProblemError(f"is not valid JSON: {exc}", field=field) from exc
