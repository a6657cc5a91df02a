"""Least-privilege Kafka access of every service, derived from :mod:`qbridge.topics`.

One SCRAM principal per service. Each may READ the topics it consumes and join its
own consumer group, WRITE the topics it produces (dead letters included), and only
DESCRIBE what it merely watches (the executor groups' lag). Since Kafka 3.0 a topic
WRITE implies ``IDEMPOTENT_WRITE``, so no cluster-level grant is needed; no service
may CREATE topics (an operator or the devstack admin creates them).

The devstack applies these bindings with :func:`qbridge.bus.admin.apply_acls`, and a
unit test checks the Strimzi ``KafkaUser`` manifests against them.
"""

from __future__ import annotations

from dataclasses import dataclass

from qbridge.topics import (
    ALL_GROUPS,
    APPROVALS,
    CLASSICAL_FALLBACK_GROUP,
    DEAD_LETTERS,
    INTAKE_GROUP,
    JOB_OUTCOMES,
    JOB_PROGRESS,
    JOB_STATUS,
    JOBS_ACCEPTED,
    ORCHESTRATOR_GROUP,
    PROBLEM_REQUESTS,
    QUANTUM_EXECUTOR_GROUP,
    RESULTS_SINK_GROUP,
    SOLVER_OUTCOMES,
    WORK_CLASSICAL,
    WORK_QUANTUM,
)

#: Prefix of the throwaway group ids of the gateway's event follower
#: (``qbridge.bus.follower.EventHub``'s default client id).
GATEWAY_FOLLOWER_GROUP_PREFIX = "qbridge-gateway-follower"


@dataclass(frozen=True)
class ServiceAccess:
    """What one service's principal may do on the bus.

    Attributes:
        principal: SCRAM user name (``User:<principal>``).
        reads: Topics it consumes (READ, implies DESCRIBE).
        groups: Consumer groups it joins (READ).
        writes: Topics it produces (WRITE, implies DESCRIBE and idempotent writes).
        describes: Topics it only inspects (partition counts, watermarks).
        describe_groups: Groups whose committed offsets it reads (lag), without joining.
        group_prefixes: Prefixes of throwaway group ids it may use (READ, PREFIXED).
    """

    principal: str
    reads: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    describes: tuple[str, ...] = ()
    describe_groups: tuple[str, ...] = ()
    group_prefixes: tuple[str, ...] = ()


_EXECUTOR_LAG = {
    "describes": (WORK_QUANTUM.name, WORK_CLASSICAL.name),
    "describe_groups": (QUANTUM_EXECUTOR_GROUP.name, CLASSICAL_FALLBACK_GROUP.name),
}

#: Access of every service, keyed by service name (as in ``devstack.pipeline.SERVICES``).
SERVICE_ACCESS: dict[str, ServiceAccess] = {
    "intake": ServiceAccess(
        principal="qbridge-intake",
        reads=INTAKE_GROUP.topics,
        groups=(INTAKE_GROUP.name,),
        writes=(JOBS_ACCEPTED.name, DEAD_LETTERS.name),
    ),
    "orchestrator": ServiceAccess(
        principal="qbridge-orchestrator",
        reads=ORCHESTRATOR_GROUP.topics,
        groups=(ORCHESTRATOR_GROUP.name,),
        writes=(
            WORK_QUANTUM.name,
            WORK_CLASSICAL.name,
            JOB_STATUS.name,
            JOB_OUTCOMES.name,
            DEAD_LETTERS.name,
        ),
        **_EXECUTOR_LAG,
    ),
    "quantum-executor": ServiceAccess(
        principal="qbridge-quantum-executor",
        reads=QUANTUM_EXECUTOR_GROUP.topics,
        groups=(QUANTUM_EXECUTOR_GROUP.name,),
        writes=(SOLVER_OUTCOMES.name, JOB_PROGRESS.name, DEAD_LETTERS.name),
    ),
    "classical-fallback": ServiceAccess(
        principal="qbridge-classical-fallback",
        reads=CLASSICAL_FALLBACK_GROUP.topics,
        groups=(CLASSICAL_FALLBACK_GROUP.name,),
        writes=(SOLVER_OUTCOMES.name, DEAD_LETTERS.name),
    ),
    "results-sink": ServiceAccess(
        principal="qbridge-results-sink",
        reads=RESULTS_SINK_GROUP.topics,
        groups=(RESULTS_SINK_GROUP.name,),
        writes=(DEAD_LETTERS.name,),
        # Its dashboard charts every group's lag.
        describes=tuple(
            dict.fromkeys(
                t for g in ALL_GROUPS for t in g.topics if t not in RESULTS_SINK_GROUP.topics
            )
        ),
        describe_groups=tuple(g.name for g in ALL_GROUPS if g != RESULTS_SINK_GROUP),
    ),
    # The front door: it may submit problem requests and reviewers' approval decisions
    # and follow job events, never forge transitions or outcomes (those come from the
    # orchestrator alone).
    "gateway": ServiceAccess(
        principal="qbridge-gateway",
        reads=(JOB_STATUS.name, JOB_OUTCOMES.name, DEAD_LETTERS.name),
        writes=(PROBLEM_REQUESTS.name, APPROVALS.name),
        group_prefixes=(GATEWAY_FOLLOWER_GROUP_PREFIX,),
        **_EXECUTOR_LAG,
    ),
}


def grants(access: ServiceAccess) -> list[tuple[str, str, str, str]]:
    """Flatten one service's access into ``(resource, pattern, name, operation)`` rows.

    Args:
        access: The service's access.

    Returns:
        Rows such as ``("topic", "literal", "qbridge.job-status.v1", "Read")``, in the
        vocabulary of Strimzi's ``KafkaUser`` ACLs (resource ``topic``/``group``).
    """
    rows: list[tuple[str, str, str, str]] = []
    rows += [("topic", "literal", t, "Read") for t in access.reads]
    rows += [("group", "literal", g, "Read") for g in access.groups]
    rows += [("topic", "literal", t, "Write") for t in access.writes]
    rows += [("topic", "literal", t, "Describe") for t in access.describes]
    rows += [("group", "literal", g, "Describe") for g in access.describe_groups]
    rows += [("group", "prefix", p, "Read") for p in access.group_prefixes]
    return rows
