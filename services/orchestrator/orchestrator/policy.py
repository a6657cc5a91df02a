"""Routing policy and circuit breakers: plain Python, no Kafka, no database."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from qbridge.status import DegradeReason


class Mode(enum.StrEnum):
    """How a job is solved."""

    QUANTUM = "quantum"
    CLASSICAL = "classical"
    RACE = "race"


@dataclass(frozen=True)
class JobFacts:
    """What routing needs to know about a job (from its envelope)."""

    tenant: str
    fallback_policy: str
    priority: int
    num_qubits: int | None
    shots: int


@dataclass(frozen=True)
class RoutingContext:
    """Live inputs to routing.

    Attributes:
        backend: Backend this tenant's quantum work goes to.
        backend_max_qubits: Its qubit limit.
        backend_available: False while its circuit breaker is open.
        quantum_lag: Lag of the quantum executors' consumer group.
        total_lag: Lag of all executors.
        shots_left: Tenant's remaining shot quota (None = unlimited).
        cost_left: Tenant's remaining cost-unit quota (None = unlimited).
        degrade_quantum_lag: Threshold above which quantum work degrades.
        pause_low_priority_lag: Threshold above which low-priority admission pauses.
        low_priority_below: Priorities below this are low.
    """

    backend: str
    backend_max_qubits: int
    backend_available: bool = True
    quantum_lag: int = 0
    total_lag: int = 0
    shots_left: int | None = None
    cost_left: float | None = None
    degrade_quantum_lag: int = 20
    pause_low_priority_lag: int = 200
    low_priority_below: int = 3


@dataclass(frozen=True)
class Decision:
    """A routing decision.

    Attributes:
        mode: Quantum, classical or race.
        backend: Quantum backend (for quantum and race).
        admit: False = defer admission (backpressure); re-decide later.
        degraded: True when quantum was wanted but policy chose classical.
        reason: Why, in words a user can read.
        code: The reason as a code whenever policy overrides what the job asked for
            (a degradation, too many qubits, a deferred admission): what metrics and
            consumers branch on, instead of parsing ``reason``.
        hold: Set when an approval policy holds the quantum attempt for a reviewer:
            why, in words (see :func:`approval_hold`).
    """

    mode: Mode
    backend: str | None
    admit: bool = True
    degraded: bool = False
    reason: str = ""
    code: DegradeReason | None = None
    hold: str | None = None


@dataclass(frozen=True)
class ApprovalPolicy:
    """Which quantum attempts need a reviewer's sign-off first (any rule matching holds).

    Attributes:
        tenants: Tenants whose quantum work always needs approval.
        problem_types: Problem types whose quantum work always needs approval.
        min_cost_units: Estimated cost units at or above which approval is needed.
        premium_backends: Backends whose use always needs approval.
        cost_per_qubit_shot: Cost units estimated per qubit and shot.
    """

    tenants: frozenset[str] = frozenset()
    problem_types: frozenset[str] = frozenset()
    min_cost_units: float | None = None
    premium_backends: frozenset[str] = frozenset()
    cost_per_qubit_shot: float = 0.001


def estimated_cost_units(job: JobFacts, policy: ApprovalPolicy) -> float:
    """A quantum attempt's cost, estimated before it runs (qubits x shots x unit rate)."""
    return (job.num_qubits or 0) * job.shots * policy.cost_per_qubit_shot


def approval_hold(
    job: JobFacts, problem_type: str, backend: str, policy: ApprovalPolicy
) -> str | None:
    """Why a quantum attempt must wait for approval, or None when it may run at once."""
    if job.tenant in policy.tenants:
        return f"tenant {job.tenant} needs approval"
    if problem_type in policy.problem_types:
        return f"problem type {problem_type} needs approval"
    if backend in policy.premium_backends:
        return f"premium backend {backend} needs approval"
    if policy.min_cost_units is not None:
        cost = estimated_cost_units(job, policy)
        if cost >= policy.min_cost_units:
            return f"estimated cost {cost:.2f} units >= {policy.min_cost_units:.2f}"
    return None


def reads_lag(job: JobFacts, low_priority_below: int) -> bool:
    """Whether :func:`decide` may look at executor lag for ``job``.

    Low-priority jobs may be paused by total lag, and jobs that may go quantum may be
    degraded by quantum lag; classical-only jobs of normal priority never depend on it.
    """
    return job.priority < low_priority_below or job.fallback_policy != "classical_only"


def decide(job: JobFacts, ctx: RoutingContext) -> Decision:
    """Decide the route of a new job.

    The order matters: hard constraints (eligibility), then explicit policy,
    then health, budget and load.
    """
    if job.priority < ctx.low_priority_below and ctx.total_lag > ctx.pause_low_priority_lag:
        return Decision(
            Mode.CLASSICAL,
            None,
            admit=False,
            code=DegradeReason.ADMISSION,
            reason=f"admission paused: executor lag {ctx.total_lag} > {ctx.pause_low_priority_lag}"
            f" and priority {job.priority} < {ctx.low_priority_below}",
        )
    if job.fallback_policy == "classical_only":
        return Decision(Mode.CLASSICAL, None, reason="policy classical_only")
    if job.num_qubits is None:
        return Decision(Mode.CLASSICAL, None, reason="classical-only problem type")
    if job.num_qubits > ctx.backend_max_qubits:
        return Decision(
            Mode.CLASSICAL,
            None,
            degraded=job.fallback_policy != "quantum_only",
            code=DegradeReason.QUBITS,
            reason=f"needs {job.num_qubits} qubits, {ctx.backend} has {ctx.backend_max_qubits}",
        )
    if job.fallback_policy == "quantum_only":
        return Decision(Mode.QUANTUM, ctx.backend, reason="policy quantum_only")
    wanted = Mode.RACE if job.fallback_policy == "race" else Mode.QUANTUM
    if not ctx.backend_available:
        return Decision(
            Mode.CLASSICAL,
            None,
            degraded=True,
            code=DegradeReason.CIRCUIT_OPEN,
            reason=f"{ctx.backend} circuit breaker open",
        )
    if ctx.shots_left is not None and ctx.shots_left < job.shots:
        return Decision(
            Mode.CLASSICAL,
            None,
            degraded=True,
            code=DegradeReason.QUOTA,
            reason=f"tenant shot quota exhausted ({ctx.shots_left} left, {job.shots} needed)",
        )
    if ctx.cost_left is not None and ctx.cost_left <= 0:
        return Decision(
            Mode.CLASSICAL,
            None,
            degraded=True,
            code=DegradeReason.QUOTA,
            reason=f"tenant cost quota exhausted ({ctx.cost_left:.2f} units left)",
        )
    if ctx.quantum_lag > ctx.degrade_quantum_lag:
        return Decision(
            Mode.CLASSICAL,
            None,
            degraded=True,
            code=DegradeReason.QUANTUM_LAG,
            reason=f"quantum executor lag {ctx.quantum_lag} > {ctx.degrade_quantum_lag}",
        )
    return Decision(wanted, ctx.backend, reason=f"policy {job.fallback_policy}")


@dataclass
class CircuitBreaker:
    """Opens after ``failures`` consecutive backend failures, for ``cooldown_s``.

    After the cooldown it is half-open: work flows again, and one more failure
    re-opens it at once.
    """

    failures: int = 3
    cooldown_s: float = 30.0
    _consecutive: dict[str, int] = field(default_factory=dict)
    _open_until: dict[str, float] = field(default_factory=dict)

    def available(self, backend: str, now: float) -> bool:
        """Whether work may go to ``backend`` at time ``now`` (seconds)."""
        return now >= self._open_until.get(backend, 0.0)

    def record_success(self, backend: str) -> None:
        """A backend answered: close the breaker."""
        self._consecutive[backend] = 0
        self._open_until.pop(backend, None)

    def record_failure(self, backend: str, now: float) -> None:
        """A backend failed (unavailable or repeated transient errors)."""
        n = self._consecutive.get(backend, 0) + 1
        self._consecutive[backend] = n
        half_open = backend in self._open_until
        if n >= self.failures or half_open:
            self._open_until[backend] = now + self.cooldown_s

    def snapshot(self, now: float) -> Mapping[str, bool]:
        """Availability of every backend seen so far."""
        seen = set(self._consecutive) | set(self._open_until)
        return {b: self.available(b, now) for b in sorted(seen)}
