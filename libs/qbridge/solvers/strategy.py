"""Per-type behaviour of the classical portfolio: one registry entry per problem type.

Each :class:`TypeStrategy` says, for one problem ``kind``:

* ``instant``: assignments computed in milliseconds whatever the size (the gateway's
  first answer, the portfolio's first incumbent);
* ``model``: the binary quadratic model the native heuristics minimize (``None``: the
  type has no useful one, e.g. job shop; knapsack's penalized encoding is dominated by
  CP-SAT on its own model);
* ``repair``: turns any assignment of that model (or of anyone else) into a feasible
  assignment of the original problem, improving it locally where cheap;
* ``exact_max_variables``: up to this many variables CP-SAT (exact model, proofs) takes
  the time left after a short heuristic phase; ``None`` means CP-SAT always leads.

Types not listed but quantum-encodable fall back to :data:`GENERIC` (their penalized
QUBO, no repair). Adding a problem type means adding an entry here, not an
``isinstance`` branch in each solver.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qbridge.problems.base import Problem
from qbridge.problems.classification import Classification
from qbridge.problems.knapsack import Knapsack
from qbridge.problems.maxcut import MaxCut
from qbridge.problems.portfolio import Portfolio
from qbridge.problems.qubo_problem import IsingProblem
from qbridge.problems.scheduling import JobShop
from qbridge.solvers import heuristics
from qbridge.solvers.anneal import BinaryModel, descend

logger = logging.getLogger(__name__)

INSTANT_SMALL = 200
"""Up to this many variables the library's (super-linear) greedy heuristics are instant."""

Assignment = tuple[int, ...]
Bits = Sequence[int] | npt.NDArray[np.int8]
"""An assignment as a sequence or a 0/1 array (model bits, possibly with slack bits)."""


@dataclass(frozen=True)
class TypeStrategy:
    """How the classical portfolio treats one problem type (see the module docstring).

    Attributes:
        kind: The problem type's wire name.
        instant: Cheap assignments (milliseconds), given the type's model if already built.
        model: The model the native heuristics minimize, or None.
        repair: Feasible (and locally improved) assignment from model bits; the bits
            may be longer than the problem's variables (slack bits are dropped).
        exact_max_variables: CP-SAT leads up to this size; None: always.
    """

    kind: str
    instant: Callable[[Problem, BinaryModel | None], list[Assignment]]
    model: Callable[[Problem], BinaryModel] | None
    repair: Callable[[Problem, Bits], Assignment]
    exact_max_variables: int | None

    def exact_first(self, problem: Problem) -> bool:
        """Whether CP-SAT should take most of the budget for ``problem``."""
        return self.exact_max_variables is None or problem.num_variables <= (
            self.exact_max_variables
        )


def _instant_descent(problem: Problem, model: BinaryModel | None) -> list[Assignment]:
    """Steepest descent (C++) from all zeros on the type's model.

    Milliseconds at 5,000 nodes (a Python greedy pass over the QUBO took a tenth of a
    second), and better: 0.97 of the best known cut on dense Gset graphs against 0.85.
    """
    if model is None:
        build = strategy_for(problem).model
        assert build is not None  # only entries with a model use this construction
        model = build(problem)
    return [_keep(problem, descend(model, np.zeros(model.num_variables, dtype=np.int8)))]


def _instant_knapsack(problem: Problem, model: BinaryModel | None) -> list[Assignment]:
    assert isinstance(problem, Knapsack)
    if problem.num_variables <= INSTANT_SMALL:
        return [a for a, _ in heuristics.knapsack_greedy(problem).solutions]
    return [_repair_knapsack(problem, (0,) * problem.num_variables)]


def _instant_portfolio(problem: Problem, model: BinaryModel | None) -> list[Assignment]:
    assert isinstance(problem, Portfolio)
    if problem.num_variables <= INSTANT_SMALL:
        return [a for a, _ in heuristics.portfolio_greedy(problem).solutions]
    mu = problem.expected_returns
    score = [mu[i] - problem.risk_aversion * problem.covariance[i][i] for i in range(len(mu))]
    chosen = set(sorted(range(len(mu)), key=lambda i: -score[i])[: problem.budget])
    return [tuple(int(i in chosen) for i in range(len(mu)))]


def _instant_jobshop(problem: Problem, model: BinaryModel | None) -> list[Assignment]:
    assert isinstance(problem, JobShop)
    if problem.num_variables <= INSTANT_SMALL:
        return [a for a, _ in heuristics.jobshop_dispatch(problem).solutions]
    starts, t = [], 0
    for job in problem.jobs:
        for op in job:
            starts.append(t)
            t += op.duration
    return [tuple(starts)]


def _instant_majority(problem: Problem, model: BinaryModel | None) -> list[Assignment]:
    # No model trains in milliseconds: every sample gets the majority class (the accuracy
    # floor); the classification solvers (qbridge.qml) give the real answers.
    assert isinstance(problem, Classification)
    majority = max(problem.classes, key=lambda c: (problem.labels.count(c), -c))
    return [(majority,) * problem.num_variables]


def _model_maxcut(problem: Problem) -> BinaryModel:
    # Spins: energy sum w s_i s_j = W - 2 cut, so minimizing it maximizes the cut.
    assert isinstance(problem, MaxCut)
    return BinaryModel.ising(np.zeros(problem.num_nodes), problem.edges)


def _model_ising(problem: Problem) -> BinaryModel:
    assert isinstance(problem, IsingProblem)
    return BinaryModel.ising(problem.h, problem.couplings, problem.offset)


def _model_qubo(problem: Problem) -> BinaryModel:
    return BinaryModel.from_qubo(problem.to_qubo().qubo)


def _keep(problem: Problem, bits: Bits) -> Assignment:
    return tuple(int(b) for b in bits[: problem.num_variables])


def _repair_knapsack(problem: Problem, bits: Bits) -> Assignment:
    """Drop the least value-dense items until the load fits, then fill by density."""
    assert isinstance(problem, Knapsack)
    n = problem.num_variables
    v = np.asarray(problem.values, dtype=np.float64)
    w = np.asarray(problem.weights, dtype=np.int64)
    x = np.asarray(bits[:n], dtype=np.int8).copy()
    density = v / w
    load = int(w @ x)
    for i in np.argsort(density, kind="stable"):
        if load <= problem.capacity:
            break
        if x[i]:
            x[i] = 0
            load -= int(w[i])
    for i in np.argsort(-density, kind="stable"):
        if not x[i] and load + int(w[i]) <= problem.capacity:
            x[i] = 1
            load += int(w[i])
    return tuple(int(b) for b in x)


def _repair_portfolio(problem: Problem, bits: Bits) -> Assignment:
    """Exactly ``budget`` assets by marginal cost, then best-improvement swaps."""
    assert isinstance(problem, Portfolio)
    return heuristics.portfolio_improve(problem, np.asarray(bits[: problem.num_variables]))


QUBO_EXACT_MAX = 48
"""MaxCut/QUBO/Ising up to this size: CP-SAT (with triangle cuts for MaxCut) usually
proves the optimum within seconds, so it leads; above, the native heuristics do."""

STRATEGIES: dict[str, TypeStrategy] = {
    s.kind: s
    for s in (
        TypeStrategy("maxcut", _instant_descent, _model_maxcut, _keep, QUBO_EXACT_MAX),
        TypeStrategy("qubo", _instant_descent, _model_qubo, _keep, QUBO_EXACT_MAX),
        TypeStrategy("ising", _instant_descent, _model_ising, _keep, QUBO_EXACT_MAX),
        TypeStrategy("knapsack", _instant_knapsack, None, _repair_knapsack, None),
        TypeStrategy("portfolio", _instant_portfolio, _model_qubo, _repair_portfolio, 40),
        TypeStrategy("jobshop", _instant_jobshop, None, _keep, None),
        TypeStrategy("classification", _instant_majority, None, _keep, 0),
    )
}
"""The entry of every built-in problem type, by ``kind``."""

GENERIC = TypeStrategy("generic", _instant_descent, _model_qubo, _keep, QUBO_EXACT_MAX)
"""Entry of quantum-encodable types without their own (penalized QUBO, no repair)."""


def strategy_for(problem: Problem) -> TypeStrategy:
    """The registry entry of ``problem``'s type (:data:`GENERIC` if it has none)."""
    return STRATEGIES.get(problem.kind, GENERIC)
