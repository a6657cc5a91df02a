"""Cardinality-constrained mean-variance portfolio selection."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from qbridge.errors import InvalidProblemError
from qbridge.problems._validation import (
    as_float,
    as_float_list,
    as_int,
    as_sequence,
    check_binary_assignment,
    check_payload,
)
from qbridge.problems.base import Evaluation, Problem, QuboEncoding, Sense
from qbridge.problems.qubo import Qubo

logger = logging.getLogger(__name__)

SYMMETRY_RTOL = 1e-9
"""Allowed asymmetry ``|S_ij - S_ji|`` relative to ``max(1, max |S|)``."""
PSD_RTOL = 1e-9
"""Allowed negative eigenvalue relative to ``max(1, max |S|)`` (round-off in given data)."""


@dataclass(frozen=True)
class Portfolio(Problem):
    """Pick exactly ``budget`` assets minimizing ``q x^T S x - mu^T x``.

    Normalization: the covariance is symmetrized (``(S + S^T) / 2``) after the
    symmetry check, so tiny asymmetries from serialization do not change the
    problem's meaning or its fingerprint.

    Attributes:
        expected_returns: ``mu``, one finite value per asset.
        covariance: ``S``, ``n x n``, symmetric (within tolerance), positive semidefinite.
        budget: Number of assets to select, ``1..n``.
        risk_aversion: ``q >= 0``.
    """

    kind: ClassVar[str] = "portfolio"
    sense: ClassVar[Sense] = Sense.MINIMIZE

    expected_returns: tuple[float, ...]
    covariance: tuple[tuple[float, ...], ...]
    budget: int
    risk_aversion: float = 1.0

    def __post_init__(self) -> None:
        mu = as_float_list(self.expected_returns, "expected_returns")
        n = len(mu)
        if n == 0:
            raise InvalidProblemError("must have at least one asset", field="expected_returns")
        # Cheap checks first: the PSD check below is an O(n^3) eigendecomposition.
        budget = as_int(self.budget, "budget", minimum=1)
        if budget > n:
            raise InvalidProblemError(f"must be <= number of assets {n}, got {budget}", "budget")
        q = as_float(self.risk_aversion, "risk_aversion", minimum=0.0)
        rows = as_sequence(self.covariance, "covariance", length=n)
        cov = np.array(
            [as_float_list(r, f"covariance[{i}]", length=n) for i, r in enumerate(rows)],
            dtype=np.float64,
        ).reshape(n, n)
        scale = max(1.0, float(np.max(np.abs(cov))))
        asym = np.abs(cov - cov.T)
        if float(asym.max()) > SYMMETRY_RTOL * scale:
            i, j = np.unravel_index(int(np.argmax(asym)), asym.shape)
            raise InvalidProblemError(
                f"not symmetric: [{i}][{j}]={cov[i, j]} vs [{j}][{i}]={cov[j, i]}",
                field="covariance",
            )
        cov = (cov + cov.T) / 2.0
        min_eig = float(np.linalg.eigvalsh(cov).min())
        if min_eig < -PSD_RTOL * scale:
            raise InvalidProblemError(
                f"not positive semidefinite (smallest eigenvalue {min_eig:.3g})",
                field="covariance",
            )
        object.__setattr__(self, "expected_returns", mu)
        object.__setattr__(
            self, "covariance", tuple(tuple(float(v) + 0.0 for v in row) for row in cov)
        )
        object.__setattr__(self, "budget", budget)
        object.__setattr__(self, "risk_aversion", q)

    @property
    def num_variables(self) -> int:
        """One bit per asset."""
        return len(self.expected_returns)

    def covariance_matrix(self) -> npt.NDArray[np.float64]:
        """The covariance as a fresh numpy array."""
        return np.array(self.covariance, dtype=np.float64)

    def objective_terms(self) -> tuple[list[float], dict[tuple[int, int], float]]:
        """The objective as binary quadratic terms (``x_i^2 = x_i`` folded into linear).

        Returns:
            ``(linear, quadratic)`` with ``quadratic`` keyed ``(i, j)``, ``i < j``.
        """
        n = self.num_variables
        q = self.risk_aversion
        s = self.covariance
        linear = [q * s[i][i] - self.expected_returns[i] for i in range(n)]
        quad = {
            (i, j): 2.0 * q * s[i][j]
            for i in range(n)
            for j in range(i + 1, n)
            if s[i][j] != 0.0 and q != 0.0
        }
        return linear, quad

    @property
    def penalty(self) -> float:
        """QUBO penalty ``A`` for ``(sum x - budget)^2``, strictly above the objective's range.

        With ``L``/``U`` the sums of the negative/positive objective terms, every
        assignment's objective lies in ``[L, U]``. A wrong cardinality costs at
        least ``A > U - L``, so it can never beat a feasible assignment.
        """
        linear, quad = self.objective_terms()
        terms = linear + list(quad.values())
        spread = sum(abs(t) for t in terms)  # == U - L
        return 1.1 * spread if spread > 0 else 1.0

    def objective(self, assignment: Sequence[int]) -> float:
        """``q x^T S x - mu^T x`` of a (validated) selection."""
        x = np.array(check_binary_assignment(assignment, self.num_variables), dtype=np.float64)
        mu = np.array(self.expected_returns)
        return float(self.risk_aversion * x @ self.covariance_matrix() @ x - mu @ x) + 0.0

    def evaluate(self, assignment: Sequence[int]) -> Evaluation:
        """Objective; feasible iff exactly ``budget`` assets are selected."""
        x = check_binary_assignment(assignment, self.num_variables)
        obj = self.objective(x)
        k = sum(x)
        if k == self.budget:
            return Evaluation(objective=obj, feasible=True)
        msg = f"selected {k} assets, budget requires exactly {self.budget}"
        return Evaluation(objective=obj, feasible=False, violations=(msg,))

    def to_qubo(self) -> QuboEncoding:
        """Objective plus ``A (sum x - budget)^2``; no slack bits."""
        n = self.num_variables
        a = self.penalty
        k = self.budget
        linear, quad = self.objective_terms()
        # (sum x - k)^2 = (1 - 2k) sum x_i + 2 sum_{i<j} x_i x_j + k^2
        linear = [v + a * (1 - 2 * k) for v in linear]
        for i in range(n):
            for j in range(i + 1, n):
                quad[(i, j)] = quad.get((i, j), 0.0) + 2.0 * a
        return QuboEncoding(Qubo.build(n, linear, quad, a * k * k), n)

    def to_dict(self) -> dict[str, Any]:
        """The payload form.

        ``{"expected_returns": [...], "covariance": [[...]], "budget": k, "risk_aversion": q}``.
        """
        return {
            "expected_returns": list(self.expected_returns),
            "covariance": [list(r) for r in self.covariance],
            "budget": self.budget,
            "risk_aversion": self.risk_aversion,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Portfolio:
        """Build from the :meth:`to_dict` form (``risk_aversion`` defaults to 1.0).

        Raises:
            InvalidProblemError: With the field path of the first invalid value.
        """
        check_payload(
            data,
            required=("expected_returns", "covariance", "budget"),
            optional=("risk_aversion",),
        )
        return cls(
            expected_returns=data["expected_returns"],
            covariance=data["covariance"],
            budget=data["budget"],
            risk_aversion=data.get("risk_aversion", 1.0),
        )
