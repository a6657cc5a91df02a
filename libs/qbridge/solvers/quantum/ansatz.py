"""Scaled Ising model and the structure-parametrized QAOA circuit.

Every coefficient of the cost layer is a circuit parameter (one per layer and
term, holding ``2 * gamma_l * w``), so the circuit depends only on the
sparsity pattern: structure-equal problems reuse one transpiled circuit and
only bind different values (see :mod:`.cache`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import ParameterVector
from qiskit.quantum_info import SparsePauliOp

from qbridge.problems.qubo import Qubo
from qbridge.solvers.quantum.base import FloatArray

logger = logging.getLogger(__name__)

_ZERO_TOL = 1e-12
"""Coefficients below this fraction of the largest one are structural zeros.

MaxCut's fields cancel exactly only in exact arithmetic; without a tolerance a
1e-17 residue would change the structure key and miss the cache.
"""


@dataclass(frozen=True)
class IsingModel:
    """``H = scale * (sum h_i Z_i + sum J_ij Z_i Z_j) + offset`` with ``max |h, J| = 1``.

    Attributes:
        num_qubits: Number of spins (QUBO variables).
        linear_support: Qubits with a non-zero field, sorted.
        linear: Scaled fields on ``linear_support``.
        quadratic_support: Coupled pairs ``(i, j)``, ``i < j``, sorted.
        quadratic: Scaled couplings on ``quadratic_support``.
        scale: Largest absolute Ising coefficient (1 if there is none).
        offset: Constant energy of the unscaled model.
    """

    num_qubits: int
    linear_support: tuple[int, ...]
    linear: FloatArray
    quadratic_support: tuple[tuple[int, int], ...]
    quadratic: FloatArray
    scale: float
    offset: float

    @classmethod
    def from_qubo(cls, qubo: Qubo) -> IsingModel:
        """Convert (``x = (1 - z) / 2``) and normalize to a well-conditioned landscape."""
        h, couplings, offset = qubo.to_ising()
        pairs = sorted(couplings)
        j_values = np.array([couplings[pq] for pq in pairs], dtype=np.float64)
        largest = max(
            float(np.max(np.abs(h), initial=0.0)), float(np.max(np.abs(j_values), initial=0.0))
        )
        scale = largest if largest > 0 else 1.0
        keep_h = [i for i in range(len(h)) if abs(h[i]) > _ZERO_TOL * scale]
        keep_j = [k for k in range(len(pairs)) if abs(j_values[k]) > _ZERO_TOL * scale]
        return cls(
            num_qubits=qubo.num_variables,
            linear_support=tuple(keep_h),
            linear=np.array([h[i] / scale for i in keep_h], dtype=np.float64),
            quadratic_support=tuple(pairs[k] for k in keep_j),
            quadratic=np.array([j_values[k] / scale for k in keep_j], dtype=np.float64),
            scale=scale,
            offset=float(offset),
        )

    def dense(self) -> IsingModel:
        """The same model on the dense template: a field on every qubit, every pair coupled.

        Absent terms get weight 0 (their gates bind to the identity), so every model
        of ``num_qubits`` spins shares one circuit: the cross-job batch template of
        :mod:`.batching`. The energy, scale and offset are unchanged.
        """
        n = self.num_qubits
        pairs = tuple((i, j) for i in range(n) for j in range(i + 1, n))
        linear = np.zeros(n, dtype=np.float64)
        linear[list(self.linear_support)] = self.linear
        index = {pq: k for k, pq in enumerate(pairs)}
        quadratic = np.zeros(len(pairs), dtype=np.float64)
        quadratic[[index[pq] for pq in self.quadratic_support]] = self.quadratic
        return IsingModel(n, tuple(range(n)), linear, pairs, quadratic, self.scale, self.offset)

    @property
    def num_terms(self) -> int:
        """Fields plus couplings."""
        return len(self.linear_support) + len(self.quadratic_support)

    @property
    def weights(self) -> FloatArray:
        """Fields then couplings: the order of the cost-layer parameters."""
        return np.concatenate([self.linear, self.quadratic])

    def observable(self) -> SparsePauliOp:
        """The scaled cost Hamiltonian without offset (what the optimizer minimizes)."""
        terms: list[tuple[str, list[int], float]] = [
            ("Z", [i], float(v)) for i, v in zip(self.linear_support, self.linear, strict=True)
        ]
        terms += [
            ("ZZ", [i, j], float(v))
            for (i, j), v in zip(self.quadratic_support, self.quadratic, strict=True)
        ]
        if not terms:
            # Primitives reject an all-zero observable; the solver never estimates
            # a model without terms, so the constant is only a placeholder.
            return SparsePauliOp.from_sparse_list([("", [], 1.0)], self.num_qubits)
        return SparsePauliOp.from_sparse_list(terms, self.num_qubits)

    def field_norm(self) -> float:
        """RMS over qubits of ``sqrt(h_i^2 + sum_j J_ij^2)``; sqrt(3) for 3-regular MaxCut.

        Optimal QAOA angles scale roughly inversely with it, which is what lets
        angles transfer between problems (see :mod:`.angles`).
        """
        sq = np.zeros(self.num_qubits)
        for i, v in zip(self.linear_support, self.linear, strict=True):
            sq[i] += v * v
        for (i, j), v in zip(self.quadratic_support, self.quadratic, strict=True):
            sq[i] += v * v
            sq[j] += v * v
        norm = float(np.sqrt(np.mean(sq)))
        return norm if norm > 0 else 1.0


def build_qaoa_circuit(
    num_qubits: int,
    linear_support: tuple[int, ...],
    quadratic_support: tuple[tuple[int, int], ...],
    p: int,
) -> QuantumCircuit:
    """The depth-``p`` QAOA ansatz for a sparsity pattern, without measurements.

    Parameters ``θ`` are laid out per layer: one per field, one per coupling, then
    the mixer angle; :func:`expand_angles` produces matching values.
    """
    num_terms = len(linear_support) + len(quadratic_support)
    theta = ParameterVector("θ", p * (num_terms + 1))
    qc = QuantumCircuit(num_qubits, name=f"qaoa_p{p}")
    qc.h(range(num_qubits))
    for layer in range(p):
        base = layer * (num_terms + 1)
        for k, i in enumerate(linear_support):
            qc.rz(theta[base + k], i)
        # RZZ gates commute; emitting them matching by matching keeps the depth
        # near the edge-chromatic number instead of the edge count.
        for k in _matching_order(quadratic_support):
            i, j = quadratic_support[k]
            qc.rzz(theta[base + len(linear_support) + k], i, j)
        qc.rx(theta[base + num_terms], range(num_qubits))
    return qc


def expand_angles(model: IsingModel, angles: FloatArray, p: int) -> FloatArray:
    """Map ``(k, 2p)`` QAOA angles ``[gamma_1..gamma_p, beta_1..beta_p]`` to circuit values.

    ``RZ(2 gamma h)`` and ``RZZ(2 gamma J)`` implement ``exp(-i gamma H)``;
    ``RX(2 beta)`` implements ``exp(-i beta X)``.
    """
    angles = np.atleast_2d(np.asarray(angles, dtype=np.float64))
    gammas, betas = angles[:, :p], angles[:, p:]
    weights = model.weights
    k = angles.shape[0]
    blocks = np.concatenate(
        [2.0 * gammas[:, :, None] * weights[None, None, :], 2.0 * betas[:, :, None]], axis=2
    )
    return blocks.reshape(k, p * (len(weights) + 1))


def _matching_order(pairs: tuple[tuple[int, int], ...]) -> list[int]:
    """Indices of ``pairs`` grouped into greedy matchings (disjoint qubit sets)."""
    remaining = list(range(len(pairs)))
    order: list[int] = []
    while remaining:
        used: set[int] = set()
        rest: list[int] = []
        for k in remaining:
            i, j = pairs[k]
            if i in used or j in used:
                rest.append(k)
            else:
                used.update((i, j))
                order.append(k)
        remaining = rest
    return order
