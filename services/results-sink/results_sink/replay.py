"""Replay a stored job from its provenance and check it gives the same answer.

The stored job gives the normalized problem and its seed; the final outcome's
provenance gives the route, solver, backend, the solver settings and the seed
actually used. The same solver is rebuilt with those settings, run again, and
its best assignment and objective are compared with the stored ones.

Classical (CP-SAT) replays are exact when the original solve stopped by a proof
or by the deterministic-time limit (``settings.stopped_by``); a solve cut by the
wall clock depends on machine speed, which the report says.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from qbridge.contracts.convert import problem_from_avro
from qbridge.errors import ErrorClass, QBridgeError
from qbridge.problems.base import Problem
from qbridge.solvers.base import Budget, Solver

DEFAULT_TOP_N = 5
DEFAULT_SHOTS = 4096
DEFAULT_TIME_LIMIT_S = 30.0
OBJECTIVE_TOLERANCE = 1e-9

# Simulators are seeded, hence reproducible; real devices are not. Per backend: the
# recorded ``backend_options`` that are also ``make_backend`` arguments.
REPLAYABLE_QUANTUM_BACKENDS: dict[str, tuple[str, ...]] = {
    "aer_statevector": (),
    "aer_mps": (),
    "fake_noisy": ("device",),
    "runtime_local": ("device", "twirling"),
}


class ReplayError(QBridgeError):
    """The job cannot be replayed (unknown, not final, no provenance, unsupported solver)."""

    error_class = ErrorClass.INVALID_INPUT


class JobSource(Protocol):
    """What replay needs from the store."""

    def get_job(self, job_id: str) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class ReplaySpec:
    """Everything needed to re-run a stored job's final solve.

    Attributes:
        job_id: The job.
        problem_type: Wire name of the problem type.
        problem: The normalized problem, rebuilt from the stored Avro branch.
        route: ``classical`` or ``quantum``.
        solver: Solver name from the provenance (``cp-sat``, ``qaoa``...).
        backend: Backend name from the provenance.
        settings: Solver settings from the provenance.
        provenance: The full stored provenance document.
        budget: Seed, shots, time limit and top-N for the re-run.
        stored_assignment: The stored final assignment.
        stored_objective: The stored final objective.
        stored_feasible: The stored feasibility.
        budget_recorded: The provenance recorded the solver's shot budget (otherwise the
            shots actually spent stand in for it).
    """

    job_id: str
    problem_type: str
    problem: Problem
    route: str
    solver: str
    backend: str
    settings: dict[str, Any]
    provenance: dict[str, Any]
    budget: Budget
    stored_assignment: tuple[int, ...]
    stored_objective: float
    stored_feasible: bool | None
    budget_recorded: bool = False


@dataclass(frozen=True)
class ReplayResult:
    """The comparison of a re-run with the stored answer."""

    spec: ReplaySpec
    assignment: tuple[int, ...]
    objective: float
    feasible: bool
    stored_objective_recomputed: float
    seconds: float
    notes: tuple[str, ...] = ()

    @property
    def objective_matches(self) -> bool:
        """Objectives equal (to a relative/absolute tolerance of 1e-9)."""
        return math.isclose(
            self.objective,
            self.spec.stored_objective,
            rel_tol=OBJECTIVE_TOLERANCE,
            abs_tol=OBJECTIVE_TOLERANCE,
        )

    @property
    def assignment_matches(self) -> bool:
        """Assignments identical."""
        return self.assignment == self.spec.stored_assignment

    @property
    def matches(self) -> bool:
        """The replay gave the same answer."""
        return self.objective_matches and self.assignment_matches

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly report."""
        s = self.spec
        return {
            "job_id": s.job_id,
            "problem_type": s.problem_type,
            "route": s.route,
            "solver": s.solver,
            "backend": s.backend,
            "seed": s.budget.seed,
            "matches": self.matches,
            "objective_matches": self.objective_matches,
            "assignment_matches": self.assignment_matches,
            "stored": {
                "objective": s.stored_objective,
                "objective_recomputed": self.stored_objective_recomputed,
                "feasible": s.stored_feasible,
                "assignment": list(s.stored_assignment),
            },
            "replayed": {
                "objective": self.objective,
                "feasible": self.feasible,
                "assignment": list(self.assignment),
            },
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
        }


SolverFactory = Callable[[ReplaySpec], Solver]


def load_spec(source: JobSource, job_id: str) -> ReplaySpec:
    """Build the replay spec of a stored job.

    Raises:
        ReplayError: Unknown job, no envelope, no final solution or no provenance.
    """
    job = source.get_job(job_id)
    if job is None:
        raise ReplayError(f"job {job_id} is not in the results store")
    if not job.get("envelope_received") or job.get("problem") is None:
        raise ReplayError(f"job {job_id}: its accepted envelope has not been stored")
    if job.get("solution_status") is None:
        raise ReplayError(f"job {job_id} has no final outcome yet (status {job.get('status')})")
    assignment = job.get("solution_assignment")
    objective = job.get("solution_objective")
    if assignment is None or objective is None:
        raise ReplayError(
            f"job {job_id} ended {job['solution_status']} without a solution: nothing to replay"
        )
    prov: dict[str, Any] | None = job.get("solution_provenance")
    if not prov:
        raise ReplayError(f"job {job_id}: the final outcome carries no provenance")
    problem = problem_from_avro(job["problem_type"], job["problem"])
    settings = dict(prov.get("settings") or {})
    seed = prov.get("seed")
    # The budget the solver was given, if the executor recorded it (settings.budget);
    # otherwise: the job's time budget and the shots actually spent.
    raw_budget = settings.get("budget")
    recorded: dict[str, Any] = raw_budget if isinstance(raw_budget, dict) else {}
    time_limit = recorded.get("time_limit_s") or settings.get("time_limit_s")
    if not time_limit:
        time_limit = job["timeout_ms"] / 1000.0 if job.get("timeout_ms") else DEFAULT_TIME_LIMIT_S
    budget = Budget(
        time_limit_s=float(time_limit),
        shots=int(recorded.get("shots") or prov.get("shots") or DEFAULT_SHOTS),
        seed=int(seed if seed is not None else job["seed"]),
        top_n=int(recorded.get("top_n") or settings.get("top_n") or DEFAULT_TOP_N),
    )
    return ReplaySpec(
        job_id=job_id,
        problem_type=job["problem_type"],
        problem=problem,
        route=str(prov.get("route") or job.get("solution_route") or ""),
        solver=str(prov.get("solver") or ""),
        backend=str(prov.get("backend") or ""),
        settings=settings,
        provenance=prov,
        budget=budget,
        stored_assignment=tuple(int(v) for v in assignment),
        stored_objective=float(objective),
        stored_feasible=job.get("solution_feasible"),
        budget_recorded=bool(recorded.get("shots")),
    )


def classical_solver(spec: ReplaySpec) -> Solver:
    """The classical portfolio or CP-SAT with the stored settings (unknown keys are run metadata).

    Raises:
        ReplayError: Another classical solver than those.
    """
    from qbridge.solvers.classical import CpSatSettings, CpSatSolver
    from qbridge.solvers.portfolio import ClassicalPortfolio, PortfolioSettings

    if spec.settings.get("portfolio") == ClassicalPortfolio.name:
        known = {f.name for f in dataclasses.fields(CpSatSettings)}
        cpsat = CpSatSettings(**{k: v for k, v in spec.settings.items() if k in known})
        return ClassicalPortfolio(PortfolioSettings(cpsat=cpsat))
    if spec.solver != CpSatSolver.name:
        raise ReplayError(f"job {spec.job_id}: no replay for classical solver {spec.solver!r}")
    known = {f.name for f in dataclasses.fields(CpSatSettings)}
    kwargs = {k: v for k, v in spec.settings.items() if k in known}
    return CpSatSolver(CpSatSettings(**kwargs))


def quantum_solver(spec: ReplaySpec) -> Solver:
    """QAOA on the stored backend with the stored QAOA and transpiler settings.

    Raises:
        ReplayError: Another quantum solver than QAOA, or a real device (whose answers
            are not reproducible and whose time is not free).
    """
    from qbridge.solvers.quantum import QaoaSettings, QaoaSolver, make_backend

    if spec.solver != QaoaSolver.name:
        raise ReplayError(f"job {spec.job_id}: no replay for quantum solver {spec.solver!r}")
    if spec.backend not in REPLAYABLE_QUANTUM_BACKENDS:
        raise ReplayError(
            f"job {spec.job_id}: backend {spec.backend!r} is not replayable "
            f"(replayable: {', '.join(REPLAYABLE_QUANTUM_BACKENDS)})"
        )
    st = spec.settings
    known = {f.name for f in dataclasses.fields(QaoaSettings)}
    # settings["final_shots"] is the number actually sampled, which is what to ask for.
    kwargs = {k: v for k, v in st.items() if k in known}
    recorded = dict(st.get("backend_options") or {})
    options = {k: recorded[k] for k in REPLAYABLE_QUANTUM_BACKENDS[spec.backend] if k in recorded}
    if "device" in options and not str(options["device"]).startswith("Fake"):
        del options["device"]  # a device's display name, not its fake-provider class name
    for key in ("optimization_level", "seed_transpiler"):
        if key in st:
            options[key] = st[key]
    return QaoaSolver(make_backend(spec.backend, **options), QaoaSettings(**kwargs))


def default_solver_factory(spec: ReplaySpec) -> Solver:
    """Pick the solver of the stored route.

    Raises:
        ReplayError: Unknown route or solver.
    """
    if spec.route == "classical":
        return classical_solver(spec)
    if spec.route == "quantum":
        return quantum_solver(spec)
    raise ReplayError(f"job {spec.job_id}: unknown route {spec.route!r} in provenance")


def replay(
    source: JobSource, job_id: str, solver_factory: SolverFactory = default_solver_factory
) -> ReplayResult:
    """Re-solve a stored job and compare with the stored answer.

    Raises:
        ReplayError: The job cannot be replayed.
        SolverError: The re-run failed.
    """
    spec = load_spec(source, job_id)
    solver = solver_factory(spec)
    started = time.perf_counter()
    outcome = solver.solve(spec.problem, spec.budget)
    seconds = time.perf_counter() - started
    notes: list[str] = []
    recomputed = spec.problem.evaluate(spec.stored_assignment).objective
    if not math.isclose(recomputed, spec.stored_objective, rel_tol=1e-9, abs_tol=1e-9):
        notes.append(
            f"stored objective {spec.stored_objective} differs from its classical "
            f"recomputation {recomputed}"
        )
    if spec.settings.get("stopped_by") == "wall_time" or (
        spec.settings.get("stop_reason") == "time_limit"
    ):
        notes.append(
            "the original solve was cut by the wall-clock limit: its answer depends on "
            "machine speed and may legitimately differ"
        )
    if (
        spec.route == "quantum"
        and spec.settings.get("exact_expectation") is False
        and not spec.budget_recorded
    ):
        notes.append(
            "the shot budget was not recorded; the shots actually spent stand in for it, "
            "which changes how a shot-based backend splits them"
        )
    return ReplayResult(
        spec=spec,
        assignment=tuple(int(v) for v in outcome.best.assignment),
        objective=float(outcome.best.objective),
        feasible=bool(outcome.best.feasible),
        stored_objective_recomputed=float(recomputed),
        seconds=seconds,
        notes=tuple(notes),
    )


def format_report(result: ReplayResult) -> str:
    """A human-readable report."""
    d = result.to_dict()
    lines = [
        f"job        {d['job_id']} ({d['problem_type']})",
        f"solver     {d['route']} / {d['solver']} on {d['backend']}, seed {d['seed']}",
        f"stored     objective {d['stored']['objective']!r}, "
        f"assignment {_short(d['stored']['assignment'])}",
        f"replayed   objective {d['replayed']['objective']!r}, "
        f"assignment {_short(d['replayed']['assignment'])} ({d['seconds']}s)",
        f"result     {'MATCH' if result.matches else 'MISMATCH'}"
        + (
            ""
            if result.matches
            else f" (objective {'=' if result.objective_matches else '!='}, "
            f"assignment {'=' if result.assignment_matches else '!='})"
        ),
    ]
    lines += [f"note       {n}" for n in result.notes]
    return "\n".join(lines)


def _short(values: list[int], limit: int = 40) -> str:
    text = "".join(str(v) for v in values) if all(v in (0, 1) for v in values) else str(values)
    return text if len(text) <= limit else text[: limit - 3] + "..."
