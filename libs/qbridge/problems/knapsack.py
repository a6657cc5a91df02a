"""0/1 knapsack: pick items of maximum total value within a weight capacity."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from qbridge.errors import InvalidProblemError
from qbridge.problems._validation import (
    MAX_EXACT_INTEGER,
    as_float,
    as_int,
    as_sequence,
    check_binary_assignment,
    check_payload,
)
from qbridge.problems.base import Evaluation, Problem, QuboEncoding, Sense
from qbridge.problems.qubo import Qubo

logger = logging.getLogger(__name__)


def slack_coefficients(capacity: int) -> tuple[int, ...]:
    """Log-encoded slack coefficients whose subset sums are exactly ``0..capacity``.

    ``1, 2, 4, ..., 2^(m-2)`` and a last coefficient ``capacity - (2^(m-1) - 1)``
    (capped so the slack cannot exceed ``capacity``); empty for ``capacity == 0``.
    """
    if capacity <= 0:
        return ()
    m = capacity.bit_length()
    coeffs = [1 << k for k in range(m - 1)]
    coeffs.append(capacity - ((1 << (m - 1)) - 1))
    return tuple(coeffs)


@dataclass(frozen=True)
class Knapsack(Problem):
    """0/1 knapsack: maximize ``sum v_i x_i`` subject to ``sum w_i x_i <= capacity``.

    Attributes:
        values: Item values, finite and ``>= 0``.
        weights: Item weights, positive integers.
        capacity: Non-negative integer capacity.
    """

    kind: ClassVar[str] = "knapsack"
    sense: ClassVar[Sense] = Sense.MAXIMIZE

    values: tuple[float, ...]
    weights: tuple[int, ...]
    capacity: int

    def __post_init__(self) -> None:
        vals = as_sequence(self.values, "values")
        if not vals:
            raise InvalidProblemError("must have at least one item", field="values")
        values = tuple(as_float(v, f"values[{i}]", minimum=0.0) for i, v in enumerate(vals))
        wts = as_sequence(self.weights, "weights", length=len(values))
        weights = tuple(
            as_int(w, f"weights[{i}]", minimum=1, maximum=MAX_EXACT_INTEGER)
            for i, w in enumerate(wts)
        )
        total = sum(weights)
        if total > MAX_EXACT_INTEGER:
            # Sums of weights must stay exact and far from int64 overflow in every solver
            # (numpy greedy, CP-SAT, the float LP bound).
            raise InvalidProblemError(
                f"weights sum to {total}, at most {MAX_EXACT_INTEGER} (2^53) allowed",
                field="weights",
            )
        capacity = as_int(self.capacity, "capacity", minimum=0, maximum=MAX_EXACT_INTEGER)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "capacity", capacity)

    @property
    def num_variables(self) -> int:
        """One bit per item."""
        return len(self.values)

    @property
    def penalty(self) -> float:
        """QUBO penalty weight ``A``, strictly larger than the total value.

        An infeasible selection overshoots by at least 1 (integer weights), so its
        penalty is at least ``A``; its value is at most ``sum(values)``. Hence its
        energy ``>= A - sum(values) > 0 >=`` the energy of any feasible selection
        with the right slack (the empty one scores 0), so no QUBO minimizer is
        infeasible.
        """
        total = sum(self.values)
        return 1.1 * total if total > 0 else 1.0

    def total_weight(self, assignment: Sequence[int]) -> int:
        """Weight of a (validated) selection."""
        x = check_binary_assignment(assignment, self.num_variables)
        return sum(w for w, b in zip(self.weights, x, strict=True) if b)

    def evaluate(self, assignment: Sequence[int]) -> Evaluation:
        """Total value; feasible iff the total weight fits the capacity."""
        x = check_binary_assignment(assignment, self.num_variables)
        value = sum(v for v, b in zip(self.values, x, strict=True) if b) + 0.0
        weight = sum(w for w, b in zip(self.weights, x, strict=True) if b)
        if weight <= self.capacity:
            return Evaluation(objective=value, feasible=True)
        msg = f"total weight {weight} exceeds capacity {self.capacity} by {weight - self.capacity}"
        return Evaluation(objective=value, feasible=False, violations=(msg,))

    def to_qubo(self) -> QuboEncoding:
        """``-sum v x + A (sum w x + sum c s - capacity)^2`` with log-encoded slack bits ``s``.

        The first ``n`` QUBO variables are the items; the slack bits follow.
        """
        n = self.num_variables
        coeffs = list(self.weights) + list(slack_coefficients(self.capacity))
        a = self.penalty
        c = self.capacity
        m = len(coeffs)
        # (sum a_k y_k - C)^2 = sum a_k^2 y_k + 2 sum_{k<h} a_k a_h y_k y_h - 2C sum a_k y_k + C^2
        linear = [a * (ck * ck - 2.0 * c * ck) for ck in coeffs]
        for i, v in enumerate(self.values):
            linear[i] -= v
        quad = {(k, h): 2.0 * a * coeffs[k] * coeffs[h] for k in range(m) for h in range(k + 1, m)}
        return QuboEncoding(Qubo.build(m, linear, quad, a * c * c), n)

    def to_dict(self) -> dict[str, Any]:
        """``{"values": [...], "weights": [...], "capacity": c}``."""
        return {
            "values": list(self.values),
            "weights": list(self.weights),
            "capacity": self.capacity,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Knapsack:
        """Build from ``{"values": [...], "weights": [...], "capacity": c}``.

        Raises:
            InvalidProblemError: With the field path of the first invalid value.
        """
        check_payload(data, required=("values", "weights", "capacity"))
        return cls(values=data["values"], weights=data["weights"], capacity=data["capacity"])
