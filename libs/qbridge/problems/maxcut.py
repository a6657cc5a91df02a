"""Weighted MaxCut: split the nodes in two sets, maximize the weight of crossing edges."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from qbridge.errors import InvalidProblemError
from qbridge.problems._validation import (
    MAX_DIMENSION,
    as_int,
    check_binary_assignment,
    check_payload,
    index_triples,
)
from qbridge.problems.base import Evaluation, Problem, QuboEncoding, Sense
from qbridge.problems.qubo import Qubo

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MaxCut(Problem):
    """Weighted MaxCut on an undirected graph.

    Bit ``x_i`` says on which side node ``i`` lies; an edge is cut when its
    endpoints differ. Negative weights are allowed (they reward keeping the
    endpoints together).

    Normalization: endpoints ordered ``i < j``, edges sorted, parallel edges
    merged by summing their weights, edges whose merged weight is zero dropped.

    Attributes:
        num_nodes: Number of nodes (``>= 1``); nodes are ``0..num_nodes-1``.
        edges: ``(i, j, weight)`` with ``i < j``, sorted, unique.
    """

    kind: ClassVar[str] = "maxcut"
    sense: ClassVar[Sense] = Sense.MAXIMIZE

    num_nodes: int
    edges: tuple[tuple[int, int, float], ...] = ()

    def __post_init__(self) -> None:
        n = as_int(self.num_nodes, "num_nodes", minimum=1, maximum=MAX_DIMENSION)
        merged = index_triples(self.edges, n, "edges", allow_diagonal=False)
        object.__setattr__(self, "num_nodes", n)
        object.__setattr__(self, "edges", tuple((i, j, w) for (i, j), w in merged.items()))

    @property
    def num_variables(self) -> int:
        """One bit per node."""
        return self.num_nodes

    def num_qubits(self) -> int:
        """One qubit per node (no slack bits), without building the QUBO."""
        return self.num_nodes

    @property
    def total_weight(self) -> float:
        """Sum of all edge weights (an upper bound on the cut if weights are >= 0)."""
        return sum(w for _, _, w in self.edges)

    def cut_value(self, assignment: Sequence[int]) -> float:
        """Weight of the edges cut by ``assignment`` (validated)."""
        x = check_binary_assignment(assignment, self.num_nodes)
        return sum(w for i, j, w in self.edges if x[i] != x[j]) + 0.0

    def evaluate(self, assignment: Sequence[int]) -> Evaluation:
        """Cut weight; every assignment is feasible."""
        return Evaluation(objective=self.cut_value(assignment), feasible=True)

    def to_qubo(self) -> QuboEncoding:
        """Minimize ``-cut``: an edge contributes ``-w (x_i + x_j - 2 x_i x_j)``."""
        linear = [0.0] * self.num_nodes
        quad: dict[tuple[int, int], float] = {}
        for i, j, w in self.edges:
            linear[i] -= w
            linear[j] -= w
            quad[(i, j)] = 2.0 * w
        return QuboEncoding(Qubo.build(self.num_nodes, linear, quad), self.num_nodes)

    def to_dict(self) -> dict[str, Any]:
        """``{"num_nodes": n, "edges": [[i, j, w], ...]}``."""
        return {"num_nodes": self.num_nodes, "edges": [[i, j, w] for i, j, w in self.edges]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MaxCut:
        """Build from ``{"num_nodes": n, "edges": [[i, j, w], ...]}``.

        Raises:
            InvalidProblemError: With the field path of the first invalid value.
        """
        check_payload(data, required=("num_nodes",), optional=("edges",))
        edges = data.get("edges", [])
        if edges is None:
            raise InvalidProblemError("must be a list, got null", field="edges")
        return cls(num_nodes=data["num_nodes"], edges=edges)
