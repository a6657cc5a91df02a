"""Quadratic unconstrained binary optimization: the lingua franca of the solvers.

Energy of ``x in {0,1}^n`` is ``offset + sum_i linear[i] x_i + sum_{i<j} q_ij x_i x_j``,
to be minimized. Quadratic terms are kept with ``i < j`` (diagonal terms are
folded into ``linear`` because ``x_i^2 = x_i``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from qbridge.errors import InvalidProblemError


@dataclass(frozen=True)
class Qubo:
    """An immutable, normalized QUBO.

    Attributes:
        num_variables: Number of binary variables.
        linear: Length-``num_variables`` tuple of linear coefficients.
        quadratic: Mapping ``(i, j) -> q`` with ``i < j``, zero terms dropped, sorted.
        offset: Constant energy term.
    """

    num_variables: int
    linear: tuple[float, ...]
    quadratic: Mapping[tuple[int, int], float] = field(default_factory=dict)
    offset: float = 0.0

    @classmethod
    def build(
        cls,
        num_variables: int,
        linear: Mapping[int, float] | Sequence[float] | None = None,
        quadratic: Mapping[tuple[int, int], float] | Iterable[tuple[int, int, float]] | None = None,
        offset: float = 0.0,
    ) -> Qubo:
        """Validate and normalize raw terms into a :class:`Qubo`.

        Duplicate quadratic terms are summed, ``(j, i)`` becomes ``(i, j)``, and
        ``(i, i)`` terms are folded into the linear part.

        Raises:
            InvalidProblemError: Indices out of range, or non-finite coefficients.
        """
        if num_variables < 1:
            raise InvalidProblemError("must be at least 1", field="num_variables")
        lin = [0.0] * num_variables
        items: Iterable[tuple[int, float]]
        if linear is None:
            items = ()
        elif isinstance(linear, Mapping):
            items = linear.items()
        else:
            if len(linear) != num_variables:
                raise InvalidProblemError(
                    f"has {len(linear)} entries, expected {num_variables}", field="linear"
                )
            items = enumerate(linear)
        for i, v in items:
            _check_index(i, num_variables, f"linear[{i}]")
            lin[int(i)] += _finite(v, f"linear[{i}]")
        quad: dict[tuple[int, int], float] = {}
        triples: Iterable[tuple[int, int, float]]
        if quadratic is None:
            triples = ()
        elif isinstance(quadratic, Mapping):
            triples = ((i, j, v) for (i, j), v in quadratic.items())
        else:
            triples = quadratic
        for k, (i, j, v) in enumerate(triples):
            where = f"quadratic[{k}]"
            _check_index(i, num_variables, where)
            _check_index(j, num_variables, where)
            val = _finite(v, where)
            i, j = int(i), int(j)
            if i == j:
                lin[i] += val
                continue
            key = (i, j) if i < j else (j, i)
            quad[key] = quad.get(key, 0.0) + val
        quad = {k: v for k, v in sorted(quad.items()) if v != 0.0}
        # Finite terms can still sum to inf (e.g. encodings of huge data): reject, typed.
        if not (all(map(math.isfinite, lin)) and all(map(math.isfinite, quad.values()))):
            raise InvalidProblemError("coefficients overflow to infinity", field="quadratic")
        return cls(
            num_variables=num_variables,
            linear=tuple(float(v) for v in lin),
            quadratic=quad,
            offset=_finite(offset, "offset"),
        )

    def energy(self, bits: Sequence[int]) -> float:
        """Energy of one assignment."""
        if len(bits) != self.num_variables:
            raise InvalidProblemError(
                f"assignment has {len(bits)} bits, expected {self.num_variables}"
            )
        e = self.offset
        for i, v in enumerate(self.linear):
            if bits[i]:
                e += v
        for (i, j), v in self.quadratic.items():
            if bits[i] and bits[j]:
                e += v
        return e

    def energies(self, bits: npt.NDArray[np.int8]) -> npt.NDArray[np.float64]:
        """Vectorized energies of a ``(m, n)`` 0/1 matrix of assignments."""
        x = np.asarray(bits, dtype=np.float64)
        e = np.full(x.shape[0], self.offset) + x @ np.asarray(self.linear)
        for (i, j), v in self.quadratic.items():
            e += v * x[:, i] * x[:, j]
        return e

    def to_ising(self) -> tuple[npt.NDArray[np.float64], dict[tuple[int, int], float], float]:
        """Ising form with ``x_i = (1 - z_i) / 2``, ``z_i in {+1, -1}``.

        Returns:
            ``(h, J, offset)`` such that energy = ``offset + sum h_i z_i + sum J_ij z_i z_j``.
            Qubit ``i`` measured as bit 1 means ``z_i = -1`` means ``x_i = 1``.
        """
        n = self.num_variables
        h = np.zeros(n)
        j_terms: dict[tuple[int, int], float] = {}
        off = self.offset
        for i, v in enumerate(self.linear):
            off += v / 2
            h[i] -= v / 2
        for (i, j), v in self.quadratic.items():
            off += v / 4
            h[i] -= v / 4
            h[j] -= v / 4
            j_terms[(i, j)] = j_terms.get((i, j), 0.0) + v / 4
        return h, j_terms, off

    def max_abs_coefficient(self) -> float:
        """Largest absolute linear or quadratic coefficient (for scaling)."""
        vals = [abs(v) for v in self.linear] + [abs(v) for v in self.quadratic.values()]
        return max(vals, default=0.0)


def _check_index(i: object, n: int, where: str) -> None:
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= int(i) < n:
        raise InvalidProblemError(f"index {i!r} out of range 0..{n - 1}", field=where)


def _finite(v: object, where: str) -> float:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise InvalidProblemError(f"not a number: {v!r}", field=where) from exc
    if not math.isfinite(f):
        raise InvalidProblemError(f"must be finite, got {f}", field=where)
    return f
