"""QUBO and Ising problems given directly as coefficients."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from qbridge.errors import InvalidProblemError
from qbridge.problems._validation import (
    MAX_DIMENSION,
    as_float,
    as_float_list,
    as_int,
    check_binary_assignment,
    check_payload,
    index_triples,
)
from qbridge.problems.base import Evaluation, Problem, QuboEncoding, Sense
from qbridge.problems.qubo import Qubo

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuboProblem(Problem):
    """Minimize a QUBO energy (see :class:`~qbridge.problems.qubo.Qubo`).

    Attributes:
        qubo: The normalized QUBO (diagonal terms folded into ``linear``,
            duplicate terms summed, zero terms dropped).
    """

    kind: ClassVar[str] = "qubo"
    sense: ClassVar[Sense] = Sense.MINIMIZE

    qubo: Qubo

    def __post_init__(self) -> None:
        if not isinstance(self.qubo, Qubo):
            raise InvalidProblemError(f"must be a Qubo, got {type(self.qubo).__name__}")

    @property
    def num_variables(self) -> int:
        """One bit per QUBO variable."""
        return self.qubo.num_variables

    def evaluate(self, assignment: Sequence[int]) -> Evaluation:
        """QUBO energy; every assignment is feasible."""
        x = check_binary_assignment(assignment, self.num_variables)
        return Evaluation(objective=self.qubo.energy(x) + 0.0, feasible=True)

    def to_qubo(self) -> QuboEncoding:
        """The QUBO itself, no slack bits."""
        return QuboEncoding(self.qubo, self.num_variables)

    def to_dict(self) -> dict[str, Any]:
        """``{"num_variables": n, "linear": [...], "quadratic": [[i, j, v], ...], "offset": c}``."""
        return {
            "num_variables": self.qubo.num_variables,
            # +0.0 turns -0.0 into 0.0 so that it cannot change the fingerprint.
            "linear": [v + 0.0 for v in self.qubo.linear],
            "quadratic": [[i, j, v + 0.0] for (i, j), v in self.qubo.quadratic.items()],
            "offset": self.qubo.offset + 0.0,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QuboProblem:
        """Build from the :meth:`to_dict` form; ``linear``, ``quadratic``, ``offset`` optional.

        ``linear`` defaults to zeros; ``[i, i, v]`` quadratic terms are folded into ``linear``.

        Raises:
            InvalidProblemError: With the field path of the first invalid value.
        """
        check_payload(data, required=("num_variables",), optional=("linear", "quadratic", "offset"))
        n = as_int(data["num_variables"], "num_variables", minimum=1, maximum=MAX_DIMENSION)
        linear = list(as_float_list(data.get("linear", [0.0] * n), "linear", length=n))
        quad = index_triples(data.get("quadratic", []), n, "quadratic", allow_diagonal=True)
        offset = as_float(data.get("offset", 0.0), "offset")
        return cls(Qubo.build(n, linear, quad, offset))


@dataclass(frozen=True)
class IsingProblem(Problem):
    """Minimize ``offset + sum_i h_i s_i + sum_{i<j} J_ij s_i s_j`` over spins ``s in {+1,-1}``.

    Decision bits are ``x_i`` with ``s_i = 1 - 2 x_i`` (bit 0 is spin up), the
    same convention as :meth:`Qubo.to_ising` and as a measured qubit.

    Normalization: ``J`` keys ordered ``i < j``, duplicates summed, zero terms
    dropped; ``J_ii`` terms are folded into ``offset`` because ``s_i^2 = 1``.

    Attributes:
        h: Local fields, one per spin.
        couplings: ``(i, j, J_ij)`` with ``i < j``, sorted, unique.
        offset: Constant energy term.
    """

    kind: ClassVar[str] = "ising"
    sense: ClassVar[Sense] = Sense.MINIMIZE

    h: tuple[float, ...]
    couplings: tuple[tuple[int, int, float], ...] = ()
    offset: float = 0.0

    def __post_init__(self) -> None:
        h = as_float_list(self.h, "h")
        if not h:
            raise InvalidProblemError("must have at least one spin", field="h")
        merged = index_triples(self.couplings, len(h), "J", allow_diagonal=True)
        offset = as_float(self.offset, "offset")
        couplings = []
        for (i, j), v in merged.items():
            if i == j:
                offset += v
            else:
                couplings.append((i, j, v))
        object.__setattr__(self, "h", h)
        object.__setattr__(self, "couplings", tuple(couplings))
        object.__setattr__(self, "offset", offset + 0.0)

    @property
    def num_variables(self) -> int:
        """One bit per spin."""
        return len(self.h)

    def num_qubits(self) -> int:
        """One qubit per spin (no slack bits), without building the QUBO."""
        return len(self.h)

    def spins(self, assignment: Sequence[int]) -> tuple[int, ...]:
        """Spins ``1 - 2 x`` of a (validated) bit assignment."""
        return tuple(1 - 2 * b for b in check_binary_assignment(assignment, len(self.h)))

    def evaluate(self, assignment: Sequence[int]) -> Evaluation:
        """Ising energy of the spins ``1 - 2 x``; every assignment is feasible."""
        s = self.spins(assignment)
        e = self.offset + sum(hi * si for hi, si in zip(self.h, s, strict=True))
        e += sum(v * s[i] * s[j] for i, j, v in self.couplings)
        return Evaluation(objective=e + 0.0, feasible=True)

    def to_qubo(self) -> QuboEncoding:
        """Substitute ``s = 1 - 2x``: the QUBO energy equals the Ising energy exactly."""
        n = len(self.h)
        linear = [-2.0 * hi for hi in self.h]
        offset = self.offset + sum(self.h)
        quad: dict[tuple[int, int], float] = {}
        for i, j, v in self.couplings:
            # J s_i s_j = J (1 - 2 x_i - 2 x_j + 4 x_i x_j)
            offset += v
            linear[i] -= 2.0 * v
            linear[j] -= 2.0 * v
            quad[(i, j)] = 4.0 * v
        return QuboEncoding(Qubo.build(n, linear, quad, offset), n)

    def to_dict(self) -> dict[str, Any]:
        """``{"h": [...], "J": [[i, j, v], ...], "offset": c}``."""
        return {
            "h": list(self.h),
            "J": [[i, j, v] for i, j, v in self.couplings],
            "offset": self.offset,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IsingProblem:
        """Build from ``{"h": [...], "J": [[i, j, v], ...], "offset": c}`` (J, offset optional).

        Raises:
            InvalidProblemError: With the field path of the first invalid value.
        """
        check_payload(data, required=("h",), optional=("J", "offset"))
        return cls(h=data["h"], couplings=data.get("J", []), offset=data.get("offset", 0.0))
