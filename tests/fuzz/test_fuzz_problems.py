"""Fuzz: problem constructors accept or reject with a typed error, never crash."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from qbridge.errors import InvalidProblemError
from qbridge.problems import Limits, Problem, problem_from_dict
from tests.fuzz.recipe import Recipe

LIMITS = Limits()


@given(st.binary(max_size=160))
def test_problem_from_dict_accepts_or_raises_invalid_problem(data: bytes) -> None:
    kind, payload = Recipe(data).labelled_problem(avro=False)
    try:
        problem = problem_from_dict(kind, payload, LIMITS)
    except InvalidProblemError:
        return
    assert isinstance(problem, Problem)
    # An accepted problem is normalized: building it again from its own form is a no-op.
    again = problem_from_dict(problem.kind, problem.to_dict())
    assert again.fingerprint() == problem.fingerprint()
