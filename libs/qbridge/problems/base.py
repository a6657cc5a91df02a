"""The problem model's base class.

A problem is an immutable, validated, *normalized* value. Normalization makes
equal problems byte-equal (sorted edges, merged duplicate terms, floats as
floats) so that :meth:`Problem.fingerprint` can be used for idempotency and
caching.
"""

from __future__ import annotations

import abc
import enum
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from qbridge.problems.qubo import Qubo


class Sense(enum.StrEnum):
    """Whether the original objective is minimized or maximized."""

    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"


@dataclass(frozen=True)
class Evaluation:
    """A classical evaluation of an assignment against the *original* problem.

    Attributes:
        objective: The original objective value (not the QUBO energy).
        feasible: Whether every constraint holds.
        violations: Human-readable descriptions of violated constraints.
    """

    objective: float
    feasible: bool
    violations: tuple[str, ...] = ()


@dataclass(frozen=True)
class QuboEncoding:
    """A problem encoded as a QUBO plus what is needed to decode it.

    Attributes:
        qubo: The QUBO to minimize.
        num_problem_vars: The first ``num_problem_vars`` QUBO variables are the
            problem's own decision variables; the rest are slack bits.
    """

    qubo: Qubo
    num_problem_vars: int

    def decode(self, bits: Sequence[int]) -> tuple[int, ...]:
        """Drop slack bits: return the problem's assignment from QUBO bits."""
        return tuple(int(b) for b in bits[: self.num_problem_vars])


class Problem(abc.ABC):
    """Base of every problem type.

    Subclasses are frozen dataclasses, validated in ``__post_init__`` (raising
    :class:`qbridge.errors.InvalidProblemError` with the field path) and
    normalized there too.
    """

    kind: ClassVar[str]
    """Stable type name used on the wire (``maxcut``, ``qubo``...)."""
    sense: ClassVar[Sense]
    quantum_encodable: ClassVar[bool] = True
    """False for classical-only types (e.g. scheduling)."""

    @property
    @abc.abstractmethod
    def num_variables(self) -> int:
        """Number of binary decision variables of the original problem."""

    @abc.abstractmethod
    def evaluate(self, assignment: Sequence[int]) -> Evaluation:
        """Evaluate an assignment classically on the original objective and constraints."""

    @abc.abstractmethod
    def to_qubo(self) -> QuboEncoding:
        """Encode as a QUBO (with penalties for constraints).

        Raises:
            NotEligibleError: For classical-only problem types.
        """

    @abc.abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """The normalized payload as plain JSON-compatible data (no ``kind``)."""

    @classmethod
    @abc.abstractmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Problem:
        """Build, validate and normalize from a JSON-compatible payload."""

    def num_qubits(self) -> int:
        """Qubits needed after encoding (problem variables plus slack bits)."""
        return self.to_qubo().qubo.num_variables

    def canonical_json(self) -> str:
        """Deterministic JSON of ``{"kind": ..., **to_dict()}``."""
        return json.dumps(
            {"kind": self.kind, **self.to_dict()},
            sort_keys=True,
            separators=(",", ":"),
            allow_nan=False,
        )

    def fingerprint(self) -> str:
        """SHA-256 hex digest of the canonical JSON; equal problems share it."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def is_better(self, a: float, b: float) -> bool:
        """True if objective ``a`` is strictly better than ``b`` for this sense."""
        return a > b if self.sense is Sense.MAXIMIZE else a < b
