"""Zero-noise extrapolation (ZNE): unitary gate folding plus Richardson extrapolation.

On a noisy backend an expectation value is biased towards zero by gate errors.
ZNE measures it at several *noise scale factors* ``lambda`` and extrapolates the
curve back to ``lambda = 0``:

* **Folding.** The prepared (already transpiled) circuit ``U`` is replaced by
  ``U (U^dagger U)^k``, which is the same unitary but runs ``lambda = 2k + 1``
  times as many gates, so it accumulates about ``lambda`` times the noise
  (global folding, Giurgi-Tasca et al. 2020). Folding happens *after*
  transpilation: the transpiler would otherwise cancel ``U^dagger U``. The
  inverse of an ISA circuit is ISA again except for ``sx``, whose inverse
  ``sxdg`` is rewritten as ``rz(pi) sx rz(pi)`` so that it carries the device's
  ``sx`` noise.
* **Extrapolation.** ``richardson``: the polynomial of degree ``n - 1`` through
  the ``n`` points, evaluated at 0 (Lagrange weights); ``linear``: least-squares
  line through the points.

Cost: every parameter set is estimated once per scale factor, so the shots of
an estimate are multiplied by ``len(scale_factors)``, and the folded circuits
are ``lambda`` times deeper (see :attr:`ZneSettings.shot_factor` and
:attr:`ZneSettings.depth_weighted_factor`).

mitiq was considered and not used: it pins an older numpy than ours and brings
cirq, pandas and matplotlib for two small functions.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, replace

import numpy as np
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

from qbridge.errors import ConfigurationError
from qbridge.solvers.quantum.base import FloatArray, PreparedCircuit, QuantumBackend

logger = logging.getLogger(__name__)

EXTRAPOLATIONS = ("richardson", "linear")
"""Accepted :attr:`ZneSettings.extrapolation` values."""

_NON_UNITARY = frozenset({"measure", "reset"})


@dataclass(frozen=True)
class ZneSettings:
    """Zero-noise extrapolation settings (recorded in provenance).

    Attributes:
        scale_factors: Odd integers ``>= 1``, strictly increasing; ``1`` is the
            unfolded circuit. At least two.
        extrapolation: ``richardson`` (exact polynomial through all points) or
            ``linear`` (least-squares line).
    """

    scale_factors: tuple[int, ...] = (1, 3, 5)
    extrapolation: str = "richardson"

    def __post_init__(self) -> None:
        scales = tuple(self.scale_factors)
        if len(scales) < 2:
            raise ConfigurationError(f"ZNE needs at least two scale factors, got {scales}")
        for s in scales:
            if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
                raise ConfigurationError(f"ZNE scale factors must be odd integers, got {s!r}")
            if s < 1 or s % 2 == 0:
                raise ConfigurationError(f"ZNE scale factors must be odd and >= 1, got {s}")
        if any(b <= a for a, b in itertools.pairwise(scales)):
            raise ConfigurationError(f"ZNE scale factors must increase strictly, got {scales}")
        if self.extrapolation not in EXTRAPOLATIONS:
            raise ConfigurationError(
                f"extrapolation must be one of {EXTRAPOLATIONS}, got {self.extrapolation!r}"
            )
        object.__setattr__(self, "scale_factors", tuple(int(s) for s in scales))

    @property
    def shot_factor(self) -> int:
        """Shots of one mitigated estimate relative to one unmitigated estimate."""
        return len(self.scale_factors)

    @property
    def depth_weighted_factor(self) -> int:
        """Circuit-depth x shots of a mitigated estimate relative to an unmitigated one."""
        return sum(self.scale_factors)


def extrapolate_to_zero(
    scale_factors: tuple[int, ...] | list[float], values: FloatArray, method: str = "richardson"
) -> FloatArray:
    """Extrapolate expectation values measured at ``scale_factors`` to zero noise.

    Args:
        scale_factors: The ``n`` noise scale factors (distinct).
        values: ``(n,)`` or ``(n, k)``: row ``i`` measured at ``scale_factors[i]``.
        method: ``richardson`` or ``linear``.

    Returns:
        ``()`` or ``(k,)`` zero-noise estimates.

    Raises:
        ConfigurationError: Unknown method, fewer than two points, or a shape mismatch.
    """
    x = np.asarray(scale_factors, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size < 2 or y.shape[0] != x.size:
        raise ConfigurationError(
            f"need >= 2 scale factors and one row of values per factor, got {x.shape}, {y.shape}"
        )
    if method == "richardson":
        # Lagrange basis polynomials evaluated at 0: w_i = prod_{j != i} x_j / (x_j - x_i).
        weights = np.array(
            [
                np.prod([x[j] / (x[j] - x[i]) for j in range(x.size) if j != i])
                for i in range(x.size)
            ]
        )
        return np.asarray(np.tensordot(weights, y, axes=1), dtype=np.float64)
    if method == "linear":
        coeffs = np.polynomial.polynomial.polyfit(x, y, deg=1)
        return np.asarray(coeffs[0], dtype=np.float64)
    raise ConfigurationError(f"extrapolation must be one of {EXTRAPOLATIONS}, got {method!r}")


def _unitary_inverse(circuit: QuantumCircuit) -> QuantumCircuit:
    """``circuit^dagger`` with ``sxdg`` rewritten in the ISA basis (``rz``, ``sx``)."""
    inverse = circuit.inverse()
    out = circuit.copy_empty_like()
    for instruction in inverse.data:
        if instruction.operation.name == "sxdg":
            (qubit,) = instruction.qubits
            # RZ(pi) RX(t) RZ(pi) = -RX(-t), so rz(pi) sx rz(pi) = sxdg up to a global phase.
            out.rz(math.pi, qubit)
            out.sx(qubit)
            out.rz(math.pi, qubit)
        else:
            out.append(instruction)
    out.global_phase = inverse.global_phase
    return out


def fold_circuit(circuit: QuantumCircuit, scale: int) -> QuantumCircuit:
    """Globally fold ``circuit`` to noise scale ``scale``: ``U (U^dagger U)^((scale - 1) / 2)``.

    Final measurements stay at the end, once. Barriers separate the folds so
    that neither a transpiler nor a simulator's gate fusion can cancel them.

    Args:
        circuit: A unitary circuit, optionally followed by measurements only.
        scale: Odd integer ``>= 1``.

    Returns:
        A new circuit with the same parameters, qubits, clbits and layout.

    Raises:
        ConfigurationError: ``scale`` is not an odd positive integer, or the
            circuit measures or resets before its end.
    """
    if isinstance(scale, bool) or scale < 1 or scale % 2 == 0:
        raise ConfigurationError(f"fold scale must be an odd integer >= 1, got {scale!r}")
    data = list(circuit.data)
    tail = len(data)
    while tail > 0 and data[tail - 1].operation.name in _NON_UNITARY | {"barrier"}:
        tail -= 1
    if any(inst.operation.name in _NON_UNITARY for inst in data[:tail]):
        raise ConfigurationError(
            "only circuits whose measurements are all at the end can be folded"
        )
    unitary = circuit.copy_empty_like()
    for inst in data[:tail]:
        unitary.append(inst)
    unitary.global_phase = circuit.global_phase
    folded = unitary.copy()
    if scale > 1:
        inverse = _unitary_inverse(unitary)
        for _ in range((scale - 1) // 2):
            folded.barrier()
            folded.compose(inverse, inplace=True)
            folded.barrier()
            folded.compose(unitary, inplace=True)
    for inst in data[tail:]:
        folded.append(inst)
    return folded


def fold_prepared(prepared: PreparedCircuit, scale: int) -> PreparedCircuit:
    """A :class:`PreparedCircuit` whose circuits are folded to ``scale`` (same parameter order)."""
    if scale == 1:
        return prepared
    measured = fold_circuit(prepared.measured, scale)
    return replace(
        prepared,
        circuit=fold_circuit(prepared.circuit, scale),
        measured=measured,
        depth=measured.depth(),
    )


@dataclass(frozen=True)
class ZneEstimate:
    """The result of one mitigated estimate.

    Attributes:
        values: ``(k,)`` zero-noise extrapolated expectation values.
        raw: ``(n_scales, k)`` expectation values measured at each scale factor.
        shots: Shots spent (all scale factors, all parameter sets).
    """

    values: FloatArray
    raw: FloatArray
    shots: int


class ZeroNoiseExtrapolator:
    """Mitigated expectation values of one prepared circuit on one backend.

    The folded circuits are built once, at construction.

    Args:
        backend: The (noisy, shot-based) backend.
        prepared: The circuit as prepared by ``backend``.
        settings: Scale factors and extrapolation method.
    """

    def __init__(
        self, backend: QuantumBackend, prepared: PreparedCircuit, settings: ZneSettings
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.folded = tuple(fold_prepared(prepared, s) for s in settings.scale_factors)

    @property
    def depths(self) -> tuple[int, ...]:
        """Depth of the measured circuit at each scale factor."""
        return tuple(p.depth for p in self.folded)

    def estimate(
        self, observable: SparsePauliOp, values: FloatArray, *, shots: int, seed: int
    ) -> ZneEstimate:
        """Estimate at every scale factor (one backend call each) and extrapolate.

        Args:
            observable: Diagonal observable on the logical qubits.
            values: ``(k, m)`` logical parameter matrix.
            shots: Shots per parameter set *per scale factor*.
            seed: Base simulator seed; each scale factor derives its own.

        Returns:
            The extrapolated values, the raw values per scale, and the shots spent.
        """
        values = np.atleast_2d(np.asarray(values, dtype=np.float64))
        raw = np.stack(
            [
                self.backend.estimate(
                    prepared, observable, values, shots=shots, seed=(seed + 104_729 * i) % 2**31
                )
                for i, prepared in enumerate(self.folded)
            ]
        )
        mitigated = extrapolate_to_zero(
            self.settings.scale_factors, raw, self.settings.extrapolation
        )
        return ZneEstimate(
            values=np.atleast_1d(mitigated),
            raw=raw,
            shots=shots * values.shape[0] * len(self.folded),
        )
