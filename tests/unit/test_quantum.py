"""QAOA solver, backends, transpile cache and failure injection (no broker).

Quantum tests run real simulations; problems are kept small so the file stays
well under a minute on two cores.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pytest

from qbridge.errors import (
    BackendUnavailableError,
    BudgetExceededError,
    ConfigurationError,
    ErrorClass,
    NotEligibleError,
    TransientSolverError,
    classify,
)
from qbridge.problems.base import Evaluation, Problem, QuboEncoding, Sense
from qbridge.problems.maxcut import MaxCut
from qbridge.problems.qubo import Qubo
from qbridge.problems.qubo_problem import QuboProblem
from qbridge.solvers.base import Budget, Route
from qbridge.solvers.quantum import (
    FailingBackend,
    QaoaSettings,
    QaoaSolver,
    TranspileCache,
    make_backend,
)
from qbridge.solvers.quantum.ansatz import IsingModel, build_qaoa_circuit, expand_angles
from qbridge.solvers.quantum.base import diagonal_expectation

# -- helpers ------------------------------------------------------------------


def regular_maxcut(n: int, seed: int, weighted: bool = False) -> MaxCut:
    """Random 3-regular graph (pairing model, retried until simple)."""
    rng = random.Random(seed)
    while True:
        stubs = [v for v in range(n) for _ in range(3)]
        rng.shuffle(stubs)
        pairs = {tuple(sorted(stubs[i : i + 2])) for i in range(0, len(stubs), 2)}
        if len(pairs) == 3 * n // 2 and all(a != b for a, b in pairs):
            edges = [
                [a, b, round(rng.uniform(0.5, 2.0), 3) if weighted else 1.0]
                for a, b in sorted(pairs)
            ]
            return MaxCut.from_dict({"num_nodes": n, "edges": edges})


def brute_force(problem: Problem) -> float:
    """Best objective over all assignments, for the problem's sense."""
    values = [
        problem.evaluate(bits).objective
        for bits in itertools.product((0, 1), repeat=problem.num_variables)
    ]
    return max(values) if problem.sense is Sense.MAXIMIZE else min(values)


def same_structure_other_weights(problem: MaxCut, seed: int) -> MaxCut:
    rng = random.Random(seed)
    edges = [[i, j, round(rng.uniform(0.5, 2.0), 3)] for i, j, _ in problem.edges]
    return MaxCut.from_dict({"num_nodes": problem.num_nodes, "edges": edges})


TINY = MaxCut.from_dict(
    {"num_nodes": 4, "edges": [[0, 1, 1.0], [1, 2, 2.0], [2, 3, 1.0], [0, 3, 1.5], [0, 2, 0.5]]}
)


@dataclass(frozen=True)
class ScheduleLike(Problem):
    """A classical-only problem type."""

    kind: ClassVar[str] = "schedule_like"
    sense: ClassVar[Sense] = Sense.MINIMIZE
    quantum_encodable: ClassVar[bool] = False

    n: int = 3

    @property
    def num_variables(self) -> int:
        return self.n

    def evaluate(self, assignment: Sequence[int]) -> Evaluation:
        return Evaluation(float(sum(assignment)), True)

    def to_qubo(self) -> QuboEncoding:
        raise NotEligibleError("classical-only")

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScheduleLike:
        return cls(n=int(data["n"]))


# -- solution quality ---------------------------------------------------------


@pytest.mark.parametrize(("n", "seed"), [(8, 1), (10, 2), (12, 3)])
def test_qaoa_3regular_maxcut_within_10_percent(n: int, seed: int) -> None:
    problem = regular_maxcut(n, seed, weighted=True)
    optimum = brute_force(problem)
    outcome = QaoaSolver("aer_statevector", QaoaSettings(p=2), cache=TranspileCache()).solve(
        problem, Budget(time_limit_s=30, shots=2048, seed=seed)
    )
    assert outcome.best.objective >= 0.9 * optimum
    # Reported objectives are recomputed classically on the original problem.
    for c in outcome.candidates:
        assert c.objective == pytest.approx(problem.evaluate(c.assignment).objective)
    # The optimized state itself is good, not just the luckiest sample.
    assert outcome.quality.expected_objective is not None
    assert outcome.quality.expected_objective >= 0.75 * optimum
    assert outcome.provenance.route is Route.QUANTUM


def test_qubo_with_fields_matches_brute_force() -> None:
    rng = np.random.default_rng(5)
    n = 6
    quad = {
        (i, j): float(rng.normal()) for i in range(n) for j in range(i + 1, n) if rng.random() < 0.5
    }
    qubo = Qubo.build(n, [float(v) for v in rng.normal(size=n)], quad)
    problem = QuboProblem(qubo)
    model = IsingModel.from_qubo(qubo)
    assert model.linear_support  # exercises the RZ (field) path
    outcome = QaoaSolver("aer_statevector", QaoaSettings(p=2), cache=TranspileCache()).solve(
        problem, Budget(shots=1024, seed=0)
    )
    assert outcome.best.objective == pytest.approx(brute_force(problem))
    energies = [c.objective for c in outcome.candidates]
    assert energies == sorted(energies)  # minimize: best first


def test_exact_expectation_matches_sampled_estimate() -> None:
    problem = regular_maxcut(6, 4, weighted=True)
    model = IsingModel.from_qubo(problem.to_qubo().qubo)
    backend = make_backend("aer_statevector")
    prepared = backend.prepare(
        build_qaoa_circuit(model.num_qubits, model.linear_support, model.quadratic_support, 1)
    )
    values = expand_angles(model, np.array([[-0.3, 0.4]]), 1)
    exact = backend.estimate(prepared, model.observable(), values, shots=0, seed=0)
    bits = backend.sample(prepared, values, shots=20000, seed=1)
    sampled = diagonal_expectation(bits, model.observable())
    assert sampled[0] == pytest.approx(exact[0], abs=0.05)
    # Sampled energies agree with the classical QUBO energies of the same bits.
    qubo = problem.to_qubo().qubo
    classical = (qubo.energies(bits[0]).mean() - model.offset) / model.scale
    assert sampled[0] == pytest.approx(classical)


def test_maxcut_fields_are_structural_zeros() -> None:
    model = IsingModel.from_qubo(regular_maxcut(8, 9, weighted=True).to_qubo().qubo)
    assert model.linear_support == ()
    assert len(model.quadratic_support) == 12
    assert np.max(np.abs(model.quadratic)) == pytest.approx(1.0)


# -- transpile cache and batching ---------------------------------------------


def test_same_structure_other_weights_hits_transpile_cache() -> None:
    cache = TranspileCache()
    backend = make_backend("aer_statevector")
    prepares = 0
    real_prepare = backend.prepare

    def counting_prepare(circuit: Any) -> Any:
        nonlocal prepares
        prepares += 1
        return real_prepare(circuit)

    backend.prepare = counting_prepare  # type: ignore[method-assign]
    solver = QaoaSolver(backend, QaoaSettings(p=2, maxiter=5), cache=cache)
    first_problem = regular_maxcut(10, 11, weighted=True)
    second_problem = same_structure_other_weights(first_problem, 12)
    first = solver.solve(first_problem, Budget(shots=512, seed=1))
    second = solver.solve(second_problem, Budget(shots=512, seed=1))

    assert first.provenance.cache_hit is False
    assert second.provenance.cache_hit is True
    assert prepares == 1  # not re-transpiled
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.size) == (1, 1, 1)
    assert second.provenance.settings["structure_key"] == first.provenance.settings["structure_key"]
    # Different weights were really bound: the answers differ in value.
    assert second.best.objective != first.best.objective

    # A different structure (or depth) misses.
    third = QaoaSolver(backend, QaoaSettings(p=1, maxiter=5), cache=cache).solve(
        second_problem, Budget(shots=512, seed=1)
    )
    assert third.provenance.cache_hit is False
    assert prepares == 2


def test_transpile_cache_is_lru_bounded_and_builds_once_under_concurrency() -> None:
    cache = TranspileCache(maxsize=2)
    backend = make_backend("aer_statevector")
    from qbridge.solvers.quantum.cache import StructureKey

    def key(n: int) -> StructureKey:
        return StructureKey(backend.target_key, backend.transpile_settings, n, 1, (), ((0, 1),))

    builds = 0
    lock = threading.Lock()

    def build(n: int) -> Any:
        nonlocal builds
        with lock:
            builds += 1
        return backend.prepare(build_qaoa_circuit(n, (), ((0, 1),), 1))

    threads = [
        threading.Thread(target=cache.get_or_build, args=(key(2), lambda: build(2)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert builds == 1
    assert cache.stats().hits == 7
    cache.get_or_build(key(3), lambda: build(3))
    cache.get_or_build(key(2), lambda: build(2))  # refresh 2
    cache.get_or_build(key(4), lambda: build(4))  # evicts 3
    assert cache.stats().evictions == 1
    _, hit = cache.get_or_build(key(3), lambda: build(3))
    assert hit is False


def test_batched_evaluation_is_one_backend_call() -> None:
    problem = regular_maxcut(8, 21)
    model = IsingModel.from_qubo(problem.to_qubo().qubo)
    backend = make_backend("aer_statevector")
    prepared = backend.prepare(
        build_qaoa_circuit(model.num_qubits, model.linear_support, model.quadratic_support, 2)
    )
    angles = np.random.default_rng(0).uniform(-1, 1, size=(24, 4))
    values = expand_angles(model, angles, 2)
    before = backend.stats()
    batched = backend.estimate(prepared, model.observable(), values, shots=0, seed=0)
    after = backend.stats()
    assert after.estimate_calls - before.estimate_calls == 1
    assert after.parameter_sets - before.parameter_sets == 24
    one_by_one = [
        backend.estimate(prepared, model.observable(), row[None, :], shots=0, seed=0)[0]
        for row in values
    ]
    np.testing.assert_allclose(batched, one_by_one, atol=1e-9)


def test_solver_evaluates_starting_angles_in_one_call() -> None:
    backend = make_backend("aer_statevector")
    settings = QaoaSettings(p=2, optimizer="none", initial_candidates=12)
    outcome = QaoaSolver(backend, settings, cache=TranspileCache()).solve(
        regular_maxcut(8, 22), Budget(shots=256, seed=0)
    )
    stats = backend.stats()
    assert (stats.estimate_calls, stats.sample_calls) == (1, 1)
    assert stats.parameter_sets == 12 + 1
    assert outcome.provenance.settings["backend_calls"] == 2
    assert outcome.provenance.optimizer_iterations == 0


# -- adapters and provenance --------------------------------------------------


@pytest.mark.parametrize("name", ["aer_statevector", "aer_mps", "fake_noisy", "runtime_local"])
def test_each_adapter_solves_tiny_problem_with_provenance(name: str) -> None:
    backend = make_backend(name)
    budget = Budget(time_limit_s=60, shots=2048, seed=5, top_n=3)
    outcome = QaoaSolver(backend, QaoaSettings(p=1, maxiter=4), cache=TranspileCache()).solve(
        TINY, budget
    )
    assert outcome.best.objective == brute_force(TINY)  # 4 nodes: optimum is always sampled
    assert 1 <= len(outcome.candidates) <= 3
    prov = outcome.provenance
    assert (prov.route, prov.solver, prov.backend) == (Route.QUANTUM, "qaoa", name)
    assert prov.backend_version == backend.version and prov.backend_version
    assert {"qiskit", "qiskit-aer", "qiskit-ibm-runtime"} <= set(prov.sdk_versions)
    assert prov.settings["optimization_level"] == 1 and "seed_transpiler" in prov.settings
    assert prov.circuit_depth is not None and prov.circuit_depth > 0
    assert prov.circuit_width == 4
    assert prov.seed == 5
    assert prov.cache_hit is False
    assert prov.cost_units > 0
    assert prov.optimizer_iterations is not None
    assert prov.timings.transpile_s > 0 and prov.timings.execute_s > 0
    assert prov.timings.postprocess_s > 0
    if backend.exact_expectation:
        assert prov.shots == budget.shots  # the optimizer spent no shots
    else:
        assert prov.shots is not None and prov.shots <= budget.shots
        assert backend.stats().shots == prov.shots
    assert outcome.quality.confidence == outcome.best.frequency


# -- eligibility and budgets --------------------------------------------------


def test_eligibility_rejects_too_many_qubits_and_classical_only_types() -> None:
    solver = QaoaSolver(make_backend("aer_statevector", max_qubits=6))
    ok = solver.eligibility(TINY)
    assert ok.eligible and ok.qubits == 4
    big = regular_maxcut(8, 1)
    verdict = solver.eligibility(big)
    assert not verdict.eligible and verdict.qubits == 8 and "8 qubits" in verdict.reason
    with pytest.raises(NotEligibleError):
        solver.solve(big, Budget())
    classical = solver.eligibility(ScheduleLike())
    assert not classical.eligible and "classical-only" in classical.reason
    # The fake 5-qubit device is limited by its size.
    assert not QaoaSolver(make_backend("runtime_local")).eligibility(big).eligible


def test_time_budget_too_small_raises_budget_exceeded() -> None:
    with pytest.raises(BudgetExceededError) as info:
        QaoaSolver("aer_statevector").solve(TINY, Budget(time_limit_s=1e-6))
    assert classify(info.value) is ErrorClass.OVER_BUDGET


def test_shot_budget_too_small_on_shot_based_backend_raises() -> None:
    solver = QaoaSolver(
        make_backend("fake_noisy", device="FakeManilaV2"), QaoaSettings(eval_shots=256)
    )
    with pytest.raises(BudgetExceededError):
        solver.solve(TINY, Budget(shots=300, seed=0))


def test_time_limit_stops_optimizer_early_with_best_so_far() -> None:
    backend = make_backend(
        "aer_statevector", fail_with="slow", fail_on="estimate", fail_after=1, slow_s=0.3
    )
    outcome = QaoaSolver(backend, QaoaSettings(p=1, maxiter=50), cache=TranspileCache()).solve(
        TINY, Budget(time_limit_s=1.0, shots=256, seed=0)
    )
    assert outcome.provenance.settings["stop_reason"] == "time_limit"
    assert outcome.provenance.optimizer_iterations is not None
    assert outcome.provenance.optimizer_iterations < 5


# -- determinism --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options", "problem"),
    [
        ("aer_statevector", {}, regular_maxcut(8, 31, weighted=True)),
        ("fake_noisy", {"device": "FakeManilaV2"}, TINY),
    ],
)
def test_same_seed_same_outcome(name: str, options: dict[str, Any], problem: MaxCut) -> None:
    def run(seed: int) -> Any:
        solver = QaoaSolver(make_backend(name, **options), QaoaSettings(p=1, maxiter=6))
        return solver.solve(problem, Budget(shots=1024, seed=seed))

    a, b, c = run(7), run(7), run(8)
    assert a.candidates == b.candidates and a.quality == b.quality
    assert a.provenance.settings["best_angles"] == b.provenance.settings["best_angles"]
    assert a.candidates != c.candidates  # the seed matters


# -- failure injection --------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "error", "error_class"),
    [
        ("unavailable", BackendUnavailableError, ErrorClass.BACKEND_UNAVAILABLE),
        ("transient", TransientSolverError, ErrorClass.TRANSIENT),
    ],
)
def test_failing_backend_raises_classified_error(
    mode: str, error: type[Exception], error_class: ErrorClass
) -> None:
    solver = QaoaSolver(make_backend("aer_statevector", fail_with=mode, fail_times=1))
    with pytest.raises(error) as info:
        solver.solve(TINY, Budget(shots=128, seed=0))
    assert classify(info.value) is error_class
    # fail_times=1: the retry succeeds.
    assert solver.solve(TINY, Budget(shots=128, seed=0)).best.objective == brute_force(TINY)


def test_slow_backend_exceeds_time_budget() -> None:
    backend = FailingBackend(make_backend("aer_statevector"), "slow", slow_s=0.5)
    with pytest.raises(BudgetExceededError):
        QaoaSolver(backend).solve(TINY, Budget(time_limit_s=0.3, shots=128))


def test_bad_configuration_is_rejected() -> None:
    with pytest.raises(ConfigurationError):
        make_backend("no_such_backend")
    with pytest.raises(ConfigurationError):
        make_backend("aer_statevector", no_such_option=1)
    with pytest.raises(ConfigurationError):
        make_backend("aer_statevector", fail_with="explode")
    with pytest.raises(ConfigurationError):
        make_backend("fake_noisy", device="NotADevice")
    with pytest.raises(ConfigurationError):
        QaoaSettings(p=0)
