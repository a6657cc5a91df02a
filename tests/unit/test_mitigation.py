"""Zero-noise extrapolation: folding, extrapolation, and its use in the QAOA loop."""

from __future__ import annotations

import json

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.quantum_info import Operator

from qbridge.errors import BudgetExceededError, ConfigurationError
from qbridge.problems.maxcut import MaxCut
from qbridge.solvers.base import Budget
from qbridge.solvers.quantum import QaoaSettings, QaoaSolver, TranspileCache, make_backend
from qbridge.solvers.quantum.ansatz import IsingModel, build_qaoa_circuit, expand_angles
from qbridge.solvers.quantum.mitigation import (
    ZeroNoiseExtrapolator,
    ZneSettings,
    extrapolate_to_zero,
    fold_circuit,
    fold_prepared,
)

TINY = MaxCut.from_dict(
    {"num_nodes": 4, "edges": [[0, 1, 1.0], [1, 2, 2.0], [2, 3, 1.0], [0, 3, 1.5], [0, 2, 0.5]]}
)
MANILA = {"device": "FakeManilaV2"}


def isa_like_circuit() -> QuantumCircuit:
    """A parametrized circuit in the IBM basis (rz, sx, x, cx), as the transpiler leaves it."""
    theta = Parameter("theta")
    qc = QuantumCircuit(3)
    qc.sx(0)
    qc.rz(theta, 0)
    qc.x(1)
    qc.cx(0, 1)
    qc.sx(2)
    qc.rz(0.3, 2)
    qc.cx(1, 2)
    qc.rz(2 * theta, 1)
    qc.sx(1)
    return qc


# -- extrapolation ----------------------------------------------------------------


def test_richardson_recovers_the_intercept_of_a_polynomial_through_the_points() -> None:
    scales = (1, 3, 5)
    # Two columns: E(l) = 0.9 - 0.1 l + 0.004 l^2 and E(l) = -2 + 0.3 l.
    values = np.array([[0.9 - 0.1 * s + 0.004 * s * s, -2 + 0.3 * s] for s in scales])
    np.testing.assert_allclose(extrapolate_to_zero(scales, values), [0.9, -2.0], atol=1e-12)


def test_linear_extrapolation_is_a_least_squares_line() -> None:
    values = np.array([1.0, 0.75, 0.4])  # not collinear
    _slope, intercept = np.polyfit([1, 3, 5], values, 1)
    assert float(extrapolate_to_zero((1, 3, 5), values, "linear")) == pytest.approx(intercept)
    assert float(extrapolate_to_zero((1, 3), values[:2], "linear")) == pytest.approx(1.125)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"scale_factors": (1,)},
        {"scale_factors": (1, 2)},
        {"scale_factors": (3, 1)},
        {"scale_factors": (1, 1.5)},
        {"scale_factors": (0, 1)},
        {"extrapolation": "exponential"},
    ],
)
def test_bad_zne_settings_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        ZneSettings(**kwargs)  # type: ignore[arg-type]


def test_extrapolation_rejects_mismatched_shapes() -> None:
    with pytest.raises(ConfigurationError):
        extrapolate_to_zero((1, 3, 5), np.zeros(2))
    with pytest.raises(ConfigurationError):
        extrapolate_to_zero((1, 3), np.zeros(2), "cubic")


# -- folding ------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1, 3, 5])
def test_folding_keeps_the_unitary_and_multiplies_the_gates(scale: int) -> None:
    qc = isa_like_circuit()
    folded = fold_circuit(qc, scale)
    bound = {qc.parameters[0]: 0.7}
    assert Operator(folded.assign_parameters(bound)).equiv(Operator(qc.assign_parameters(bound)))
    ops = folded.count_ops()
    base = qc.count_ops()
    assert ops["cx"] == scale * base["cx"]
    # sx and its rewritten inverse both count as sx: the folded circuit stays in the basis.
    assert ops["sx"] == scale * base["sx"]
    assert "sxdg" not in ops
    assert set(folded.parameters) == set(qc.parameters)


def test_folding_keeps_final_measurements_once_at_the_end() -> None:
    qc = isa_like_circuit()
    qc.measure_all()
    folded = fold_circuit(qc, 3)
    assert folded.count_ops()["measure"] == 3
    assert [inst.operation.name for inst in folded.data[-3:]] == ["measure"] * 3
    unmeasured = folded.remove_final_measurements(inplace=False)
    plain = qc.remove_final_measurements(inplace=False)
    bound = {qc.parameters[0]: -1.1}
    expected = Operator(plain.assign_parameters(bound))
    assert Operator(unmeasured.assign_parameters(bound)).equiv(expected)


def test_folding_rejects_mid_circuit_measurement_and_even_scales() -> None:
    qc = QuantumCircuit(1, 1)
    qc.sx(0)
    qc.measure(0, 0)
    qc.sx(0)
    with pytest.raises(ConfigurationError, match="measurements are all at the end"):
        fold_circuit(qc, 3)
    with pytest.raises(ConfigurationError):
        fold_circuit(isa_like_circuit(), 2)


def test_folded_prepared_circuit_keeps_parameter_order_and_grows_in_depth() -> None:
    backend = make_backend("fake_noisy", **MANILA)
    model = IsingModel.from_qubo(TINY.to_qubo().qubo)
    prepared = backend.prepare(
        build_qaoa_circuit(model.num_qubits, model.linear_support, model.quadratic_support, 1)
    )
    folded = fold_prepared(prepared, 3)
    assert folded.columns == prepared.columns
    assert list(folded.circuit.parameters) == list(prepared.circuit.parameters)
    # U, U^dagger (sxdg becomes rz sx rz: never shallower) and U again, measured once.
    assert folded.depth >= 3 * (prepared.depth - 1)
    assert fold_prepared(prepared, 1) is prepared


# -- mitigation on the fake noisy device ----------------------------------------------


def test_zne_moves_a_noisy_expectation_towards_the_noiseless_value() -> None:
    model = IsingModel.from_qubo(TINY.to_qubo().qubo)
    logical = build_qaoa_circuit(model.num_qubits, model.linear_support, model.quadratic_support, 1)
    values = expand_angles(model, np.array([[0.4, 0.6]]), 1)
    observable = model.observable()
    exact_backend = make_backend("aer_statevector")
    exact = exact_backend.estimate(
        exact_backend.prepare(logical), observable, values, shots=0, seed=0
    )[0]

    noisy = make_backend("fake_noisy", **MANILA)
    prepared = noisy.prepare(logical)
    raw = noisy.estimate(prepared, observable, values, shots=4000, seed=11)[0]
    zne = ZeroNoiseExtrapolator(noisy, prepared, ZneSettings(scale_factors=(1, 3)))
    before = noisy.stats()
    result = zne.estimate(observable, values, shots=4000, seed=11)
    after = noisy.stats()

    assert abs(result.values[0] - exact) < abs(raw - exact)
    # Noise shrinks |E| as the circuit is folded further.
    assert abs(result.raw[1, 0]) < abs(result.raw[0, 0])
    assert result.shots == 2 * 4000
    assert after.estimate_calls - before.estimate_calls == 2
    assert after.shots - before.shots == 2 * 4000


# -- QAOA with ZNE ----------------------------------------------------------------------


def test_qaoa_with_zne_records_settings_and_shot_cost_in_provenance() -> None:
    zne = ZneSettings(scale_factors=(1, 3))
    settings = QaoaSettings(p=1, maxiter=2, initial_candidates=2, eval_shots=128, zne=zne)
    backend = make_backend("fake_noisy", **MANILA)
    outcome = QaoaSolver(backend, settings, cache=TranspileCache()).solve(
        TINY, Budget(shots=2048, seed=3)
    )
    prov = outcome.provenance
    assert prov.settings["zne"] == {"scale_factors": (1, 3), "extrapolation": "richardson"}
    assert json.loads(json.dumps(prov.settings))["zne"]["scale_factors"] == [1, 3]
    assert prov.settings["zne_applied"] is True
    sets = prov.settings["parameter_sets_evaluated"]
    # Every parameter set ran at both scale factors; the folded half is zne_shots.
    assert prov.settings["zne_shots"] == sets * 128
    assert prov.shots == 2 * sets * 128 + prov.settings["final_shots"]
    assert prov.shots == backend.stats().shots
    assert prov.settings["zne_circuit_depths"][1] > prov.settings["zne_circuit_depths"][0]
    # Folded shots are charged by their depth: 1 + 3 base-circuit shots per set.
    expected_cost = prov.circuit_depth * (4 * sets * 128 + prov.settings["final_shots"]) / 1e4
    assert prov.cost_units == pytest.approx(expected_cost)


def test_zne_raises_the_shot_price_of_an_estimate_in_the_budget_check() -> None:
    zne = ZneSettings(scale_factors=(1, 3, 5))
    settings = QaoaSettings(p=1, eval_shots=256, final_shots=256, zne=zne)
    solver = QaoaSolver(make_backend("fake_noisy", **MANILA), settings, cache=TranspileCache())
    # 512 shots fund one plain estimate (256) + final sampling, but not 3 x 256.
    with pytest.raises(BudgetExceededError, match="768 shots"):
        solver.solve(TINY, Budget(shots=512, seed=0))


def test_zne_is_ignored_on_exact_backends() -> None:
    settings = QaoaSettings(p=1, maxiter=2, zne=ZneSettings())
    outcome = QaoaSolver("aer_statevector", settings, cache=TranspileCache()).solve(
        TINY, Budget(shots=256, seed=0)
    )
    assert outcome.provenance.settings["zne_applied"] is False
    assert outcome.provenance.settings["zne_shots"] == 0
