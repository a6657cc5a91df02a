"""QAOA behind the common :class:`~qbridge.solvers.base.Solver` interface.

Flow of :meth:`QaoaSolver.solve`:

1. ``problem.to_qubo()`` -> Ising model normalized to ``max |h, J| = 1``.
2. Circuit for the *structure* (sparsity pattern, size, ``p``) from the transpile
   cache, transpiled on a miss; coefficients are bound as parameter values.
3. Transferred / ramp starting angles evaluated in ONE batched backend call.
4. Local optimizer (scipy COBYLA by default) from the best start, stopped early
   by the time and shot budgets (best-so-far angles are kept).
5. Final sampling with ``budget.shots`` (or what the optimizer left) and
   ``budget.seed``; every distinct sample is decoded and evaluated classically
   on the original problem, then ranked. Samples are reported raw: no classical
   polishing, so the outcome measures the quantum routine honestly.

Cross-job batching (:meth:`QaoaSolver.solve_many`, :mod:`.batching`): the same
flow per job, but steps 3-5 of compatible jobs run in lockstep and share each
backend call. Per job, provenance then records ``batch_size`` and
``dense_template``; ``backend_calls`` counts the shared calls the job took part in,
and its stage timings include waiting for the other jobs of the batch.

Cost units (provenance ``cost_units``): ``depth * (shots + 100 * exact_sets) / 1e4``
where ``shots`` counts every shot spent and ``exact_sets`` the parameter sets
evaluated exactly (a simulator-only luxury priced as 100 shots each). With
zero-noise extrapolation (``QaoaSettings.zne``, shot-based backends only) each
estimate runs at every scale factor; a shot of a circuit folded ``lambda`` times
is charged as ``lambda`` shots.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any, Protocol

import numpy as np
from qiskit.quantum_info import SparsePauliOp
from scipy.optimize import minimize

from qbridge.errors import BudgetExceededError, ConfigurationError, NotEligibleError
from qbridge.problems.base import Problem, QuboEncoding
from qbridge.solvers.base import (
    Budget,
    Candidate,
    Eligibility,
    Outcome,
    Provenance,
    Quality,
    Route,
    Solver,
    Timings,
    rank_candidates,
)
from qbridge.solvers.quantum.angles import initial_candidates
from qbridge.solvers.quantum.ansatz import IsingModel, build_qaoa_circuit, expand_angles
from qbridge.solvers.quantum.backends import make_backend
from qbridge.solvers.quantum.base import (
    BitMatrix,
    FloatArray,
    PreparedCircuit,
    QuantumBackend,
)
from qbridge.solvers.quantum.batching import CallCosts, Lane, LaneDeadlineError, run_lockstep
from qbridge.solvers.quantum.cache import DEFAULT_TRANSPILE_CACHE, StructureKey, TranspileCache
from qbridge.solvers.quantum.checkpoint import CheckpointStore, LoopCheckpoint
from qbridge.solvers.quantum.costs import EvaluationCost
from qbridge.solvers.quantum.mitigation import ZeroNoiseExtrapolator, ZneSettings

logger = logging.getLogger(__name__)

EXACT_SET_SHOT_EQUIVALENT = 100
"""Shots an exactly evaluated parameter set is charged as, in ``cost_units``."""

_OPTIMIZERS = ("COBYLA", "Nelder-Mead", "Powell", "none")

_CALL_COSTS_KEPT = 256
"""Batch keys whose learned call durations a solver keeps (least recently used forgotten)."""


@dataclass(frozen=True)
class QaoaSettings:
    """Knobs of the QAOA routine (all recorded in provenance).

    Attributes:
        p: Number of QAOA layers.
        optimizer: scipy method (``COBYLA``, ``Nelder-Mead``, ``Powell``) or ``none``
            to keep the best starting angles.
        maxiter: Optimizer iterations (objective evaluations) at most.
        rhobeg: COBYLA's initial step; small because the start is already good.
        tol: Optimizer tolerance.
        initial_candidates: Starting angle sets evaluated in the first batched call.
        eval_shots: Shots per parameter set when the backend estimates by sampling.
        final_shots: Shots of the final sampling; None means ``budget.shots`` on
            exact backends and half of it on shot-based ones (the rest funds the
            optimizer).
        zne: Zero-noise extrapolation of the optimizer's expectation values on
            shot-based (noisy) backends; None (default) disables it. Ignored on
            exact backends, which have no noise to extrapolate away.
    """

    p: int = 2
    optimizer: str = "COBYLA"
    maxiter: int = 40
    rhobeg: float = 0.1
    tol: float = 1e-3
    initial_candidates: int = 16
    eval_shots: int = 256
    final_shots: int | None = None
    zne: ZneSettings | None = None

    def __post_init__(self) -> None:
        if self.p < 1:
            raise ConfigurationError(f"p must be >= 1, got {self.p}")
        if self.optimizer not in _OPTIMIZERS:
            raise ConfigurationError(
                f"optimizer must be one of {_OPTIMIZERS}, got {self.optimizer!r}"
            )
        if self.maxiter < 0 or self.initial_candidates < 1 or self.eval_shots < 1:
            raise ConfigurationError("maxiter >= 0, initial_candidates >= 1, eval_shots >= 1")
        if self.final_shots is not None and self.final_shots < 1:
            raise ConfigurationError(f"final_shots must be >= 1, got {self.final_shots}")


class _Stop(Exception):
    """Raised inside the objective to end the optimizer early."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Loop:
    """Book-keeping of one parameter loop: best point, budgets, counters."""

    backend: QuantumBackend | Lane
    """The real backend, or the job's lane of a cross-job batch."""
    prepared: PreparedCircuit
    model: IsingModel
    p: int
    deadline: float
    seed: int
    eval_shots: int
    optimizer_shots: int
    maxiter: int = 0
    zne: ZeroNoiseExtrapolator | None = None
    final_cost_factor: float = 1.0
    """Final sampling time in units of one single-set evaluation (estimate)."""
    best_value: float = float("inf")
    best_angles: FloatArray | None = None
    calls: int = 0
    parameter_sets: int = 0
    shots_used: int = 0
    zne_shots: int = 0
    """Shots spent at scale factors above 1 (included in ``shots_used``)."""
    charged_shots: float = 0.0
    """``shots_used`` with folded shots weighted by their scale factor (for cost units)."""
    exact_sets: int = 0
    iterations: int = 0
    single_eval_s: float = 0.0
    checkpoints: CheckpointStore | None = None
    checkpoint_key: str | None = None
    observable: SparsePauliOp = field(init=False)

    def __post_init__(self) -> None:
        self.observable = self.model.observable()

    def evaluate(self, angles: FloatArray) -> FloatArray:
        """Evaluate ``(k, 2p)`` angle sets in one backend call; track the best."""
        k = angles.shape[0]
        shots = 0 if self.backend.exact_expectation else self.eval_shots
        seed = (self.seed * 1_000_003 + 7919 * self.calls) % (2**31 - 1)
        matrix = expand_angles(self.model, angles, self.p)
        if self.zne is not None:
            mitigated = self.zne.estimate(self.observable, matrix, shots=shots, seed=seed)
            values = mitigated.values
            self.zne_shots += mitigated.shots - shots * k
            self.shots_used += mitigated.shots
            self.charged_shots += shots * k * self.zne.settings.depth_weighted_factor
        else:
            values = self.backend.estimate(
                self.prepared, self.observable, matrix, shots=shots, seed=seed
            )
            self.shots_used += shots * k
            self.charged_shots += shots * k
        self.calls += 1
        self.parameter_sets += k
        self.exact_sets += k if self.backend.exact_expectation else 0
        i = int(np.argmin(values))
        if values[i] < self.best_value:
            self.best_value = float(values[i])
            self.best_angles = angles[i].copy()
        return values

    @property
    def estimate_shots(self) -> int:
        """Shots of one single-set estimate (all ZNE scale factors)."""
        factor = self.zne.settings.shot_factor if self.zne is not None else 1
        return self.eval_shots * factor

    def objective(self, x: FloatArray) -> float:
        """Scalar objective for scipy, with the budget checks between iterations."""
        if self.iterations >= self.maxiter:
            raise _Stop("maxiter")
        now = time.perf_counter()
        # One more evaluation plus the final sampling must still fit.
        if now + (1.0 + self.final_cost_factor) * self.single_eval_s > self.deadline:
            raise _Stop("time_limit")
        if not self.backend.exact_expectation and (
            self.shots_used + self.estimate_shots > self.optimizer_shots
        ):
            raise _Stop("shot_budget")
        start = time.perf_counter()
        try:
            value = float(self.evaluate(np.asarray(x, dtype=np.float64)[None, :])[0])
        except LaneDeadlineError as exc:  # a batch could not serve it in time
            raise _Stop("time_limit") from exc
        self.single_eval_s = max(self.single_eval_s, time.perf_counter() - start)
        self.iterations += 1
        self.checkpoint(x)
        return value

    def checkpoint(self, x: FloatArray) -> None:
        """Save the loop's position durably (when a store and key are set)."""
        if self.checkpoints is None or self.checkpoint_key is None:
            return
        assert self.best_angles is not None
        self.checkpoints.save(
            self.checkpoint_key,
            LoopCheckpoint(
                iteration=self.iterations,
                maxiter=self.maxiter,
                angles=[float(a) for a in np.ravel(x)],
                best_angles=[float(a) for a in self.best_angles],
                best_value=self.best_value,
                calls=self.calls,
                parameter_sets=self.parameter_sets,
                shots_used=self.shots_used,
                exact_sets=self.exact_sets,
                single_eval_s=self.single_eval_s,
                energy_scale=self.model.scale,
                energy_offset=self.model.offset,
            ),
        )

    def resume(self) -> LoopCheckpoint | None:
        """Restore the last checkpoint under the key, if there is one."""
        if self.checkpoints is None or self.checkpoint_key is None:
            return None
        cp = self.checkpoints.load(self.checkpoint_key)
        if cp is None:
            return None
        self.iterations, self.calls = cp.iteration, cp.calls
        self.parameter_sets, self.shots_used = cp.parameter_sets, cp.shots_used
        self.exact_sets, self.single_eval_s = cp.exact_sets, cp.single_eval_s
        self.best_value = cp.best_value
        self.best_angles = np.asarray(cp.best_angles, dtype=np.float64)
        return cp


class LaneSolver(Protocol):
    """What :meth:`QaoaSolver.solve_group` calls per job: a solve on a batch lane."""

    def solve_lane(self, problem: Problem, budget: Budget, lane: Lane) -> Outcome:
        """Solve one job with every backend call going through ``lane``."""
        ...


class QaoaSolver(Solver):
    """QAOA on a pluggable quantum backend.

    Args:
        backend: A :class:`QuantumBackend` or a name for :func:`make_backend`.
        settings: QAOA settings (defaults: p=2, COBYLA, 40 iterations).
        cache: Transpile cache; the process-wide one by default.
        checkpoints: Where the optimizer loop checkpoints each iteration when
            :meth:`solve` is given a ``checkpoint_key`` (None: no checkpoints).
        template_max_qubits: Cross-job batches on exact backends bind every job of
            up to this many qubits to the dense template circuit (see
            :mod:`.batching`); larger jobs batch only with the same sparsity
            pattern (the dense template's gate count grows as n^2).
    """

    name = "qaoa"
    route = Route.QUANTUM

    def __init__(
        self,
        backend: QuantumBackend | str = "aer_statevector",
        settings: QaoaSettings | None = None,
        *,
        cache: TranspileCache | None = None,
        checkpoints: CheckpointStore | None = None,
        template_max_qubits: int = 12,
    ) -> None:
        self.backend = make_backend(backend) if isinstance(backend, str) else backend
        self.settings = settings or QaoaSettings()
        self.cache = cache if cache is not None else DEFAULT_TRANSPILE_CACHE
        self.checkpoints = checkpoints
        self.template_max_qubits = template_max_qubits
        # Batched call durations per batch key, learned across groups. Above the dense
        # template's size a key names one sparsity pattern (one graph), so the least
        # recently used keys are forgotten beyond _CALL_COSTS_KEPT.
        self._call_costs: OrderedDict[Hashable | None, CallCosts] = OrderedDict()
        self._costs_lock = threading.Lock()
        self._eval_cost = EvaluationCost()

    def eligibility(self, problem: Problem) -> Eligibility:
        """Eligible when the type is quantum-encodable and fits the backend's qubits."""
        if not problem.quantum_encodable:
            return Eligibility(False, f"problem type {problem.kind!r} is classical-only")
        try:
            qubits = problem.num_qubits()
        except NotEligibleError as exc:
            return Eligibility(False, exc.message)
        return self._fits(qubits)

    def _fits(self, qubits: int) -> Eligibility:
        if qubits > self.backend.max_qubits:
            return Eligibility(
                False,
                f"needs {qubits} qubits, backend {self.backend.name} allows "
                f"{self.backend.max_qubits}",
                qubits=qubits,
            )
        return Eligibility(True, qubits=qubits)

    def _dense_template(self, num_qubits: int) -> bool:
        """Whether a cross-job batch binds ``num_qubits``-qubit jobs to the dense template."""
        return self.backend.exact_expectation and num_qubits <= self.template_max_qubits

    def batch_key(self, problem: Problem, budget: Budget) -> Hashable | None:
        """What a job must share with others to run in one cross-job batch (see :mod:`.batching`).

        Returns:
            A hashable key (equal keys: compatible jobs), or None when the job runs
            alone: not quantum-encodable or too large (``solve`` reports why), no
            terms to optimize, or zero-noise extrapolation is on.
        """
        if self.settings.zne is not None and not self.backend.exact_expectation:
            return None
        try:
            if not problem.quantum_encodable:
                return None
            model = IsingModel.from_qubo(problem.to_qubo().qubo)
        except Exception:  # solve() classifies and reports the failure
            return None
        if model.num_terms == 0 or model.num_qubits > self.backend.max_qubits:
            return None
        structure = (
            "dense"
            if self._dense_template(model.num_qubits)
            else (model.linear_support, model.quadratic_support)
        )
        return ("qaoa", id(self), model.num_qubits, structure, budget.shots)

    def solve_group(
        self,
        members: Sequence[tuple[LaneSolver, Problem, Budget]],
        *,
        stopping: Callable[[], bool] | None = None,
    ) -> list[Outcome | Exception]:
        """Run compatible jobs in lockstep on this solver's backend (cross-job batching).

        Each job keeps its own time budget inside the group (see :mod:`.batching`).

        Args:
            members: ``(solver, problem, budget)`` per job, all of one
                :meth:`batch_key`; ``solver`` is this solver or a wrapper of it
                bound to the job (checkpoint key, progress), see :class:`LaneSolver`.
            stopping: Polled while the group runs; once true the group ends
                promptly and the unfinished jobs' results are
                :class:`~qbridge.errors.StoppingError`.

        Returns:
            Each job's outcome or exception, in order: one job's failure is not
            another's.
        """
        if not members:
            return []
        key = self.batch_key(members[0][1], members[0][2])
        with self._costs_lock:
            costs = self._call_costs.setdefault(key, CallCosts())
            self._call_costs.move_to_end(key)
            while len(self._call_costs) > _CALL_COSTS_KEPT:
                self._call_costs.popitem(last=False)
        tasks = [functools.partial(s.solve_lane, problem, budget) for s, problem, budget in members]
        results, stats = run_lockstep(self.backend, tasks, costs=costs, stopping=stopping)
        logger.info(
            "qaoa batch of %d jobs: %d backend calls for %d requests "
            "(%d fallbacks, %d evaluations past a deadline, %d calls without stragglers)",
            len(tasks),
            stats.backend_calls,
            stats.requests,
            stats.fallbacks,
            stats.dropped,
            stats.stragglers,
        )
        return results

    def solve_lane(self, problem: Problem, budget: Budget, lane: Lane) -> Outcome:
        """:meth:`solve` inside a cross-job batch (no checkpoint key)."""
        return self.solve(problem, budget, lane=lane)

    def solve_many(
        self, problems: Sequence[Problem], budgets: Sequence[Budget]
    ) -> list[Outcome | Exception]:
        """Solve compatible jobs together (see :meth:`batch_key`), incompatible ones alone.

        Args:
            problems: The jobs' problems.
            budgets: Their budgets (same length).

        Returns:
            Each job's outcome or exception, in order.

        Raises:
            ValueError: ``problems`` and ``budgets`` differ in length.
        """
        if len(problems) != len(budgets):
            raise ValueError(f"{len(problems)} problems but {len(budgets)} budgets")
        groups: dict[Hashable, list[int]] = {}
        for i, (problem, budget) in enumerate(zip(problems, budgets, strict=True)):
            key = self.batch_key(problem, budget)
            groups.setdefault(("alone", i) if key is None else key, []).append(i)
        results: list[Outcome | Exception] = [RuntimeError("not run")] * len(problems)
        for members in groups.values():
            if len(members) == 1:
                try:
                    results[members[0]] = self.solve(problems[members[0]], budgets[members[0]])
                except Exception as exc:
                    results[members[0]] = exc
                continue
            group = self.solve_group([(self, problems[i], budgets[i]) for i in members])
            for i, result in zip(members, group, strict=True):
                results[i] = result
        return results

    def solve(
        self,
        problem: Problem,
        budget: Budget,
        *,
        checkpoint_key: str | None = None,
        lane: Lane | None = None,
    ) -> Outcome:
        """Run QAOA within ``budget`` (see the module docstring for the flow).

        With a ``checkpoint_key`` (``job_id:attempt``) and a checkpoint store, the
        optimizer loop saves its position after every iteration and, when a
        checkpoint exists under the key (a redelivery after a crash), continues from
        it: the starting batch and the iterations already done are not repeated.

        With a ``lane`` (from :meth:`solve_group`), every backend evaluation and the
        final sampling go through the cross-job batch; on the dense template the
        circuit is the template, bound with this job's weights (zeros elsewhere).

        Raises:
            NotEligibleError: See :meth:`eligibility`.
            BudgetExceededError: Not even one evaluation fits the time budget, or
                the shot budget cannot fund one estimate plus the final sampling.
            TransientSolverError: From the backend; worth a retry.
            BackendUnavailableError: From the backend; reroute.
        """
        start = time.perf_counter()
        deadline = start + budget.time_limit_s
        if lane is not None:
            lane.deadline = deadline  # the batch serves this job's evaluations until then
        if not problem.quantum_encodable:
            raise NotEligibleError(f"problem type {problem.kind!r} is classical-only")
        encoding = problem.to_qubo()  # encoded once: eligibility() would encode again
        eligible = self._fits(encoding.qubo.num_variables)
        if not eligible.eligible:
            raise NotEligibleError(eligible.reason)
        settings = self.settings
        model = IsingModel.from_qubo(encoding.qubo)
        dense = lane is not None and model.num_terms > 0 and self._dense_template(model.num_qubits)
        if dense:
            model = model.dense()
        runner: QuantumBackend | Lane = self.backend if lane is None else lane

        key = StructureKey(
            target_key=self.backend.target_key,
            transpile=self.backend.transpile_settings,
            num_qubits=model.num_qubits,
            p=settings.p,
            linear_support=model.linear_support,
            quadratic_support=model.quadratic_support,
        )
        prepared, hit = self.cache.get_or_build(
            key,
            lambda: self.backend.prepare(
                build_qaoa_circuit(
                    model.num_qubits, model.linear_support, model.quadratic_support, settings.p
                )
            ),
        )
        transpiled_at = time.perf_counter()

        zne = self._extrapolator(prepared)
        final_shots, optimizer_shots, n_start = self._plan_shots(budget)
        if transpiled_at >= deadline:
            raise BudgetExceededError(
                f"time budget {budget.time_limit_s}s spent before the first evaluation"
            )
        loop = _Loop(
            backend=runner,
            prepared=prepared,
            model=model,
            p=settings.p,
            deadline=deadline,
            seed=budget.seed,
            eval_shots=settings.eval_shots,
            optimizer_shots=optimizer_shots,
            maxiter=settings.maxiter,
            zne=zne,
            final_cost_factor=1.0
            if self.backend.exact_expectation
            else max(1.0, final_shots / (settings.eval_shots * self._estimate_factor())),
            checkpoints=self.checkpoints,
            checkpoint_key=checkpoint_key,
        )
        starts = initial_candidates(settings.p, model.field_norm(), n_start)
        resumed = loop.resume() if model.num_terms else None
        if resumed is not None:
            logger.info(
                "qaoa resumes %s at iteration %d/%d",
                checkpoint_key,
                resumed.iteration,
                loop.maxiter,
            )
            stop_reason = self._optimize(loop)
        elif model.num_terms == 0:
            # Constant energy: every assignment is optimal, nothing to optimize.
            loop.best_angles, loop.best_value = starts[0].copy(), 0.0
            stop_reason = "constant_objective"
        else:
            # In a batch the other jobs' starting points share the calls.
            share = 1 if lane is None else lane.lockstep.running
            starts = self._affordable_starts(
                starts, prepared, deadline, loop.final_cost_factor, share
            )
            batch_start = time.perf_counter()
            loop.evaluate(starts)
            elapsed = time.perf_counter() - batch_start
            if lane is None and self.backend.statevector_cost:  # a lane's time includes waiting
                self._eval_cost.observe(prepared, starts.shape[0], elapsed)
            # A single set costs at least its share of the batch: a first guess for
            # the deadline check until real single evaluations are timed.
            loop.single_eval_s = elapsed / starts.shape[0]
            if time.perf_counter() > deadline:
                raise BudgetExceededError(
                    f"the first evaluation did not fit the time budget of {budget.time_limit_s}s"
                )
            assert loop.best_angles is not None  # set by the batch
            loop.checkpoint(loop.best_angles)  # iteration 0: the starting batch
            stop_reason = self._optimize(loop)
        assert loop.best_angles is not None  # set by the first evaluation

        bits = runner.sample(
            prepared,
            expand_angles(model, loop.best_angles[None, :], settings.p),
            shots=final_shots,
            seed=budget.seed,
        )[0]
        if lane is not None:
            lane.leave()  # the last backend call: the batch need not wait for the rest
        executed_at = time.perf_counter()

        candidates, expected = _evaluate_samples(problem, encoding, bits)
        ranked = rank_candidates(problem, candidates, max(1, budget.top_n))
        best = ranked[0]
        done = time.perf_counter()
        if self.checkpoints is not None and checkpoint_key is not None:
            self.checkpoints.delete(checkpoint_key)

        shots_used = loop.shots_used + final_shots
        provenance = Provenance(
            route=Route.QUANTUM,
            solver=self.name,
            backend=self.backend.name,
            backend_version=self.backend.version,
            sdk_versions=sdk_versions(),
            settings={
                **asdict(settings),
                **self.backend.transpile_settings.as_dict(),
                "backend_options": self.backend.options,
                "exact_expectation": self.backend.exact_expectation,
                "structure_key": key.digest(),
                "ising_scale": model.scale,
                "initial_candidates_evaluated": int(starts.shape[0]) if loop.calls else 0,
                "backend_calls": loop.calls + 1,
                "parameter_sets_evaluated": loop.parameter_sets,
                "final_shots": final_shots,
                "stop_reason": stop_reason,
                "resumed_from_iteration": None if resumed is None else resumed.iteration,
                "best_angles": [float(a) for a in loop.best_angles],
                "best_scaled_energy": loop.best_value,
                "zne_applied": zne is not None,
                "zne_shots": loop.zne_shots,
                "zne_circuit_depths": list(zne.depths) if zne is not None else None,
                "batch_size": 1 if lane is None else lane.lockstep.size,
                "dense_template": dense,
            },
            circuit_depth=prepared.depth,
            circuit_width=prepared.width,
            shots=shots_used,
            seed=budget.seed,
            optimizer_iterations=loop.iterations,
            timings=Timings(
                transpile_s=transpiled_at - start,
                execute_s=executed_at - transpiled_at,
                postprocess_s=done - executed_at,
            ),
            cache_hit=hit,
            cost_units=prepared.depth
            * (loop.charged_shots + final_shots + EXACT_SET_SHOT_EQUIVALENT * loop.exact_sets)
            / 1e4,
        )
        logger.info(
            "qaoa %s on %s: best=%s conf=%.3f iters=%d stop=%s cache_hit=%s %.3fs",
            problem.kind,
            self.backend.name,
            best.objective,
            best.frequency or 0.0,
            loop.iterations,
            stop_reason,
            hit,
            done - start,
        )
        return Outcome(
            best=best,
            candidates=ranked,
            quality=Quality(expected_objective=expected, confidence=best.frequency),
            provenance=provenance,
        )

    def _affordable_starts(
        self,
        starts: FloatArray,
        prepared: PreparedCircuit,
        deadline: float,
        final_factor: float,
        share: int = 1,
    ) -> FloatArray:
        """The starting points that fit the budget, by the predicted evaluation time.

        On statevector backends only, once evaluations were timed (see
        :class:`~qbridge.solvers.quantum.costs.EvaluationCost`): at most half the time
        left goes to the starting batch (at least one point), which ``share`` jobs
        evaluate together (a cross-job batch: their rows share the calls).

        Raises:
            BudgetExceededError: Not even one evaluation and the final sampling fit.
        """
        if not self.backend.statevector_cost:
            return starts
        per_row = self._eval_cost.per_row(prepared)
        if per_row is None:
            return starts
        left = deadline - time.perf_counter()
        if per_row * (1.0 + final_factor) > left:
            raise BudgetExceededError(
                f"one evaluation of this {prepared.width}-qubit circuit takes ~{per_row:.3f}s "
                f"on {self.backend.name} (predicted from timed ones), {max(left, 0.0):.3f}s of "
                "the time budget left"
            )
        fit = int(0.5 * left / (per_row * max(1, share)))
        return starts[: max(1, min(starts.shape[0], fit))]

    def _extrapolator(self, prepared: PreparedCircuit) -> ZeroNoiseExtrapolator | None:
        """The ZNE helper for this solve, or None (disabled, or an exact backend)."""
        zne = self.settings.zne
        if zne is None or self.backend.exact_expectation:
            return None
        return ZeroNoiseExtrapolator(self.backend, prepared, zne)

    def _estimate_factor(self) -> int:
        """How many circuits one estimate runs (the ZNE scale factors, or 1)."""
        zne = self.settings.zne
        return 1 if zne is None or self.backend.exact_expectation else zne.shot_factor

    def _plan_shots(self, budget: Budget) -> tuple[int, int, int]:
        """Split ``budget.shots``: ``(final_shots, optimizer_shots, n_starting_points)``.

        Raises:
            BudgetExceededError: A shot-based backend cannot fund one estimate.
        """
        s = self.settings
        if budget.shots < 1:
            raise BudgetExceededError("shot budget must allow at least one shot")
        if self.backend.exact_expectation:
            final = min(s.final_shots or budget.shots, budget.shots)
            return final, 0, s.initial_candidates
        final = min(s.final_shots or max(1, budget.shots // 2), budget.shots)
        optimizer_shots = budget.shots - final
        per_estimate = s.eval_shots * self._estimate_factor()
        affordable = optimizer_shots // per_estimate
        if affordable < 1:
            raise BudgetExceededError(
                f"shot budget {budget.shots} cannot fund one estimate ({per_estimate} shots) "
                f"plus the final sampling ({final} shots) on {self.backend.name}"
            )
        # Half of the affordable estimates go to starting points, half to the optimizer.
        return final, optimizer_shots, min(s.initial_candidates, max(1, affordable // 2))

    def _optimize(self, loop: _Loop) -> str:
        """Refine the best starting angles; return why the loop stopped."""
        s = self.settings
        if s.optimizer == "none" or s.maxiter == 0:
            return "no_optimizer"
        assert loop.best_angles is not None
        # scipy's own cap may not go below num_vars + 2 (COBYLA); ours is enforced
        # exactly by _Loop.objective.
        options: dict[str, Any] = {"maxiter": max(s.maxiter, 2 * s.p + 2)}
        if s.optimizer == "COBYLA":
            options["rhobeg"] = s.rhobeg
        try:
            result = minimize(
                loop.objective,
                loop.best_angles.copy(),
                method=s.optimizer,
                tol=s.tol,
                options=options,
            )
        except _Stop as stop:
            logger.debug("optimizer stopped early: %s", stop.reason)
            return stop.reason
        return "converged" if result.success else "maxiter"


def _evaluate_samples(
    problem: Problem, encoding: QuboEncoding, bits: BitMatrix
) -> tuple[list[Candidate], float]:
    """Evaluate each distinct sample classically; return candidates and E[objective]."""
    rows, counts = np.unique(bits, axis=0, return_counts=True)
    shots = int(counts.sum())
    candidates: list[Candidate] = []
    expected = 0.0
    for row, count in zip(rows, counts, strict=True):
        assignment = encoding.decode([int(b) for b in row])
        evaluation = problem.evaluate(assignment)
        frequency = int(count) / shots
        expected += frequency * evaluation.objective
        candidates.append(
            Candidate(assignment, evaluation.objective, evaluation.feasible, frequency)
        )
    return candidates, expected


def sdk_versions() -> dict[str, str]:
    """Versions of the quantum SDK packages (for provenance)."""
    return dict(_sdk_versions())


@functools.cache
def _sdk_versions() -> dict[str, str]:
    versions = {}
    for package in ("qiskit", "qiskit-aer", "qiskit-ibm-runtime", "numpy", "scipy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    return versions
