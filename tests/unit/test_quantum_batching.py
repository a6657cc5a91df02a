"""Cross-job batching of QAOA: lockstep loops sharing backend calls, per-job outcomes."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from qiskit.quantum_info import SparsePauliOp

from qbridge.bus import Record
from qbridge.contracts.records import JobProgress
from qbridge.errors import TransientSolverError
from qbridge.executor.app import ExecutorApp
from qbridge.executor.worker import batch_groups, execute_group
from qbridge.problems.maxcut import MaxCut
from qbridge.solvers.base import Budget, Outcome
from qbridge.solvers.quantum import QaoaSettings, QaoaSolver, TranspileCache, aer, make_backend
from qbridge.solvers.quantum.aer import AerStatevectorBackend, z_diagonal
from qbridge.solvers.quantum.ansatz import IsingModel, build_qaoa_circuit, expand_angles
from qbridge.solvers.quantum.base import FloatArray, PreparedCircuit
from qbridge.solvers.quantum.checkpoint import MemoryCheckpointStore
from qbridge.topics import SOLVER_OUTCOMES
from quantum_executor.solvers import QuantumSolvers

SETTINGS = QaoaSettings(p=1, maxiter=8, initial_candidates=4)


def graph(n: int, seed: int, density: float = 0.5) -> MaxCut:
    """A connected random weighted graph (a ring plus random chords)."""
    rng = random.Random(seed)
    edges = {(i, (i + 1) % n) if i < (i + 1) % n else ((i + 1) % n, i) for i in range(n)}
    edges |= {(i, j) for i in range(n) for j in range(i + 2, n) if rng.random() < density}
    return MaxCut(n, tuple((i, j, round(rng.uniform(0.5, 2.0), 3)) for i, j in sorted(edges)))


def _ok(result: Outcome | Exception) -> Outcome:
    assert isinstance(result, Outcome), f"expected an outcome, got {result!r}"
    return result


def test_batched_solves_follow_the_same_optimizer_path_in_fewer_backend_calls() -> None:
    problems = [graph(6, s) for s in range(6)]
    budgets = [Budget(shots=512, seed=s) for s in range(6)]
    alone_backend, batch_backend = AerStatevectorBackend(), AerStatevectorBackend()
    alone = QaoaSolver(alone_backend, SETTINGS, cache=TranspileCache())
    batched = QaoaSolver(batch_backend, SETTINGS, cache=TranspileCache())

    expected = [alone.solve(p, b) for p, b in zip(problems, budgets, strict=True)]
    results = [_ok(r) for r in batched.solve_many(problems, budgets)]

    for want, got in zip(expected, results, strict=True):
        # Exact estimates: the same values, so COBYLA takes the same steps.
        np.testing.assert_allclose(
            got.provenance.settings["best_angles"],
            want.provenance.settings["best_angles"],
            atol=1e-8,
        )
        assert got.provenance.optimizer_iterations == want.provenance.optimizer_iterations
        assert got.provenance.settings["stop_reason"] == want.provenance.settings["stop_reason"]
        assert got.provenance.settings["batch_size"] == 6
        assert got.provenance.settings["dense_template"] is True
        # Final samples: one seed per batched call, so shot noise only (512 shots).
        assert got.quality.expected_objective == pytest.approx(
            want.quality.expected_objective, rel=0.1
        )
        assert got.best.feasible
    alone_calls = alone_backend.stats().estimate_calls
    batch_calls = batch_backend.stats().estimate_calls
    longest = max(r.provenance.settings["backend_calls"] for r in results)
    assert alone_calls == sum(r.provenance.settings["backend_calls"] - 1 for r in expected)
    # One call per lockstep step, not per job and step (plus the first call: a timing
    # probe of one job before the calls are sized to the jobs' deadlines).
    assert batch_calls <= longest + 1


def test_batched_solves_are_deterministic_for_a_seed() -> None:
    problems = [graph(6, s) for s in range(4)]
    budgets = [Budget(shots=256, seed=7 + s) for s in range(4)]
    solver = QaoaSolver(AerStatevectorBackend(), SETTINGS, cache=TranspileCache())
    first = [_ok(r) for r in solver.solve_many(problems, budgets)]
    second = [_ok(r) for r in solver.solve_many(problems, budgets)]
    for a, b in zip(first, second, strict=True):
        assert a.candidates == b.candidates
        assert a.quality == b.quality


class _PoisonedBackend(AerStatevectorBackend):
    """Fails every estimate that includes one particular job's observable."""

    def __init__(self, poison: SparsePauliOp) -> None:
        super().__init__()
        self.poison = poison
        self.batched_failures = 0

    def _estimate_rows(
        self,
        prepared: PreparedCircuit,
        observables: Sequence[SparsePauliOp],
        values: FloatArray,
        *,
        shots: int,
        seed: int,
    ) -> FloatArray:
        if any(o.equiv(self.poison) for o in observables):
            self.batched_failures += len(observables) > 1
            raise TransientSolverError("injected: this job's circuit failed")
        return super()._estimate_rows(prepared, observables, values, shots=shots, seed=seed)


def test_a_failing_job_does_not_fail_the_others() -> None:
    problems = [graph(6, s) for s in range(4)]
    poison = IsingModel.from_qubo(problems[1].to_qubo().qubo).dense().observable()
    backend = _PoisonedBackend(poison)
    solver = QaoaSolver(backend, SETTINGS, cache=TranspileCache())
    budgets = [Budget(shots=256, seed=1)] * 4
    budgets[2] = Budget(time_limit_s=0.0, shots=256, seed=1)  # no time at all

    results = solver.solve_many(problems, budgets)

    assert isinstance(results[1], TransientSolverError)  # its own backend failure
    assert type(results[2]).__name__ == "BudgetExceededError"  # its own budget
    for i in (0, 3):
        outcome = _ok(results[i])
        assert outcome.provenance.settings["batch_size"] == 4
        assert outcome.provenance.optimizer_iterations > 0
    assert backend.batched_failures >= 1  # the shared call failed, then job by job


def test_a_transient_failure_of_the_shared_call_is_retried_job_by_job() -> None:
    backend = make_backend(
        "aer_statevector", fail_with="transient", fail_on="estimate", fail_after=1, fail_times=1
    )
    solver = QaoaSolver(backend, SETTINGS, cache=TranspileCache())
    problems = [graph(6, s) for s in range(3)]
    results = solver.solve_many(problems, [Budget(shots=256, seed=1)] * 3)
    # The first call (a timing probe of one job) succeeded, the first batched estimate
    # failed once; each job's own retry succeeded.
    assert all(_ok(r).provenance.settings["batch_size"] == 3 for r in results)


def test_incompatible_jobs_are_not_batched() -> None:
    solver = QaoaSolver(
        AerStatevectorBackend(), SETTINGS, cache=TranspileCache(), template_max_qubits=6
    )
    budget = Budget(shots=256, seed=1)
    six_a, six_b, seven = graph(6, 1), graph(6, 2), graph(7, 3)
    key = solver.batch_key
    assert key(six_a, budget) == key(six_b, budget)  # dense template: any 6-node graph
    assert key(six_a, budget) != key(seven, budget)  # qubits differ
    assert key(six_a, budget) != key(six_b, Budget(shots=512, seed=1))  # shots differ
    assert key(six_a, budget) != QaoaSolver(
        AerStatevectorBackend(), QaoaSettings(p=2, maxiter=8, initial_candidates=4)
    ).batch_key(six_a, budget)  # another solver: other settings (p)
    # Above the template size only equal sparsity patterns batch together.
    eight_a, eight_b = graph(8, 4), graph(8, 5)
    reweighted = MaxCut(8, tuple((u, v, w * 2.0) for u, v, w in eight_a.edges))
    assert key(eight_a, budget) != key(eight_b, budget)
    assert key(eight_a, budget) == key(reweighted, budget)
    assert key(MaxCut(3, ()), budget) is None  # nothing to optimize: alone

    results = solver.solve_many([six_a, seven, six_b], [budget] * 3)
    sizes = [_ok(r).provenance.settings["batch_size"] for r in results]
    assert sizes == [2, 1, 2]


@pytest.mark.parametrize("probabilities_up_to", [16, 0])
def test_batched_estimates_match_single_estimates(
    probabilities_up_to: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 16: read back basis-state probabilities; 0: one EstimatorV2 PUB (wide circuits).
    monkeypatch.setattr(aer, "_PROBABILITIES_MAX_QUBITS", probabilities_up_to)
    backend = AerStatevectorBackend()
    models = [IsingModel.from_qubo(graph(6, s).to_qubo().qubo) for s in range(3)]
    angles = np.array([[0.3, 0.4], [-0.2, 0.6]])
    for model in models:
        prepared = backend.prepare(
            build_qaoa_circuit(6, model.linear_support, model.quadratic_support, 1)
        )
        values = expand_angles(model, angles, 1)
        single = backend.estimate(prepared, model.observable(), values, shots=0, seed=0)
        other = IsingModel.from_qubo(graph(6, 9).to_qubo().qubo)
        mixed = [model.observable(), other.observable()]
        rows = backend.estimate_rows(prepared, mixed, values, shots=0, seed=0)
        assert rows[0] == pytest.approx(single[0], abs=1e-9)
        if other.linear_support == model.linear_support and (
            other.quadratic_support == model.quadratic_support
        ):
            return
        # Row 1 binds model's weights but is measured with other's observable.
        direct = backend.estimate(prepared, other.observable(), values[1:], shots=0, seed=0)
        assert rows[1] == pytest.approx(direct[0], abs=1e-9)
    with pytest.raises(ValueError, match="diagonal"):
        z_diagonal(SparsePauliOp("XI"), 2)


# -- executor level ------------------------------------------------------------------


def _item(i: int, n: int = 6, **overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)  # per item: a module-level time would be stale in a long run
    problem = graph(n, i)
    item: dict[str, Any] = {
        "work_id": f"job-{i}:1:quantum",
        "job_id": f"job-{i}",
        "attempt": 1,
        "route": "quantum",
        "backend": "aer_statevector",
        "tenant": "acme",
        "problem_type": "maxcut",
        "problem": {
            "num_nodes": n,
            "edges": [{"u": u, "v": v, "weight": w} for u, v, w in problem.edges],
        },
        "time_limit_ms": 20_000,
        "shots": 256,
        "seed": i,
        "top_n": 3,
        "priority": 5,
        "deadline_at": now + timedelta(seconds=60),
        "correlation_id": f"corr-{i}",
        "enqueued_at": now,
    }
    item.update(overrides)
    return item


def test_executor_groups_compatible_items_and_reports_each_job() -> None:
    events: list[JobProgress] = []
    solvers = QuantumSolvers(
        ["aer_statevector"], SETTINGS, checkpoints=MemoryCheckpointStore(), progress=events.append
    )
    items = [_item(i) for i in range(4)] + [_item(9, n=7)]
    items.append(_item(10, problem={"num_nodes": 2, "edges": [{"u": 0, "v": 5, "weight": 1}]}))
    now = datetime.now(UTC)
    items.append(_item(11, deadline_at=now - timedelta(seconds=1)))

    groups = batch_groups(items, solvers.for_item, now)
    assert sorted(map(sorted, groups)) == [[0, 1, 2, 3], [4], [5], [6]]

    records = execute_group(items[:4] + items[5:], solvers.for_item, now)
    statuses = [[r["status"] for r in recs] for recs in records]
    assert statuses[:4] == [["started", "ok"]] * 4
    assert statuses[4] == ["started", "error"]  # invalid problem: its own error
    assert statuses[5] == ["error"]  # deadline passed: not started
    for i, recs in enumerate(records[:4]):
        assert recs[-1]["job_id"] == f"job-{i}"
        assert '"batch_size": 4' in recs[-1]["provenance"]["settings_json"]
    # Progress is per job: every grouped job reported its own run.
    assert {e.job_id for e in events} >= {f"job-{i}" for i in range(4)}


class _Producer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, topic: Any, value: Any, key: Any = None, headers: Any = None) -> None:
        self.sent.append(value)


class _Consumer:
    stopping = False


@pytest.mark.parametrize("group_max", [0, 8])
def test_executor_batch_handler_with_and_without_cross_job_batching(group_max: int) -> None:
    producer = _Producer()
    app = ExecutorApp(
        "quantum-executor",
        _Consumer(),  # type: ignore[arg-type]
        producer,  # type: ignore[arg-type]
        SOLVER_OUTCOMES,
        QuantumSolvers(["aer_statevector"], SETTINGS),
        concurrency=2,
        group_max=group_max,
    )
    records = [
        Record("work", 0, i, f"job-{i}".encode(), _item(i), "qbridge.WorkItem", {}, 0)
        for i in range(5)
    ]
    app.handle_batch(records)
    final = {r["job_id"]: r for r in producer.sent if r["status"] != "started"}
    assert sorted(final) == [f"job-{i}" for i in range(5)]
    assert all(r["status"] == "ok" for r in final.values())
    expected = 5 if group_max else 1
    assert all(
        f'"batch_size": {expected}' in r["provenance"]["settings_json"] for r in final.values()
    )
    assert app.handled == 5


def test_learned_call_costs_are_kept_for_a_bounded_number_of_circuit_structures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Above the dense template a batch key names one graph's sparsity pattern: a long-running
    # executor must not keep one cost model per graph it ever batched.
    from qbridge.solvers.quantum import qaoa

    monkeypatch.setattr(qaoa, "_CALL_COSTS_KEPT", 2)
    solver = QaoaSolver(AerStatevectorBackend(), SETTINGS, cache=TranspileCache())
    keys = []
    for n in (3, 4, 5):  # one structure (qubit count) per group
        problems = [graph(n, s) for s in range(2)]
        budgets = [Budget(shots=128, seed=s) for s in range(2)]
        assert all(isinstance(r, Outcome) for r in solver.solve_many(problems, budgets))
        keys.append(solver.batch_key(problems[0], budgets[0]))
    assert list(solver._call_costs) == keys[1:]  # the least recently used one was forgotten
