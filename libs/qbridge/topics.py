"""Every topic and consumer group of the pipeline, in one place.

Compose files, Kubernetes manifests and the services all derive their names
from here (a test checks that they do not drift).

Every topic is keyed by ``job_id`` (problem requests: by tenant + idempotency
key) and the topics the orchestrator consumes share one partition count, so a
job's envelope and its solver outcomes land on the same orchestrator instance.
"""

from __future__ import annotations

from dataclasses import dataclass

MESSAGE_MAX_BYTES = 1_048_576
"""Largest message a qbridge producer writes (librdkafka ``message.max.bytes``), 1 MiB."""

TOPIC_MAX_MESSAGE_BYTES = MESSAGE_MAX_BYTES + 65_536
"""Topic ``max.message.bytes`` (broker ``message.max.bytes``): the producer limit plus room for
the record-batch framing, so anything a qbridge producer accepted is also accepted by the
broker."""

MAX_REQUEST_BYTES = 921_600
"""Byte budget of one encoded ``ProblemRequest`` (900 KiB). Intake dead-letters larger ones
("too large") before decoding them. The envelope intake makes from a request is at most a few
KiB larger than the request (ids, fingerprint, timestamps; the normalized problem is never
larger than the given one), so the 124 KiB left up to :data:`MESSAGE_MAX_BYTES` guarantees
that every accepted request's envelope can be produced."""


@dataclass(frozen=True)
class TopicSpec:
    """A topic, the Avro record its values carry, and its layout.

    Attributes:
        name: Kafka topic name.
        record: Full name of the Avro record of its values (the schema subject).
        partitions: Partition count the services assume (also the max useful replicas).
        retention_ms: Retention; ``-1`` keeps forever.
    """

    name: str
    record: str
    partitions: int = 6
    retention_ms: int = 7 * 24 * 3600 * 1000


PROBLEM_REQUESTS = TopicSpec("qbridge.problem-requests.v1", "qbridge.ProblemRequest")
JOBS_ACCEPTED = TopicSpec("qbridge.jobs-accepted.v1", "qbridge.JobEnvelope")
WORK_QUANTUM = TopicSpec("qbridge.work-quantum.v1", "qbridge.WorkItem")
WORK_CLASSICAL = TopicSpec("qbridge.work-classical.v1", "qbridge.WorkItem")
SOLVER_OUTCOMES = TopicSpec("qbridge.solver-outcomes.v1", "qbridge.SolverOutcome")
JOB_STATUS = TopicSpec("qbridge.job-status.v1", "qbridge.JobStatusTransition")
JOB_OUTCOMES = TopicSpec("qbridge.job-outcomes.v1", "qbridge.JobOutcome")
APPROVALS = TopicSpec("qbridge.approvals.v1", "qbridge.ApprovalDecision")
DEAD_LETTERS = TopicSpec(
    "qbridge.dead-letters.v1",
    "qbridge.DeadLetter",
    partitions=3,
    retention_ms=30 * 24 * 3600 * 1000,
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    PROBLEM_REQUESTS,
    JOBS_ACCEPTED,
    WORK_QUANTUM,
    WORK_CLASSICAL,
    SOLVER_OUTCOMES,
    JOB_STATUS,
    JOB_OUTCOMES,
    APPROVALS,
    DEAD_LETTERS,
)


@dataclass(frozen=True)
class ConsumerGroup:
    """A consumer group and the topics it reads (what its lag is measured on)."""

    name: str
    topics: tuple[str, ...]


INTAKE_GROUP = ConsumerGroup("qbridge-intake", (PROBLEM_REQUESTS.name,))
ORCHESTRATOR_GROUP = ConsumerGroup(
    "qbridge-orchestrator", (JOBS_ACCEPTED.name, SOLVER_OUTCOMES.name, APPROVALS.name)
)
QUANTUM_EXECUTOR_GROUP = ConsumerGroup("qbridge-quantum-executor", (WORK_QUANTUM.name,))
CLASSICAL_FALLBACK_GROUP = ConsumerGroup("qbridge-classical-fallback", (WORK_CLASSICAL.name,))
RESULTS_SINK_GROUP = ConsumerGroup(
    "qbridge-results-sink",
    (JOBS_ACCEPTED.name, JOB_STATUS.name, JOB_OUTCOMES.name, SOLVER_OUTCOMES.name, APPROVALS.name),
)

ALL_GROUPS: tuple[ConsumerGroup, ...] = (
    INTAKE_GROUP,
    ORCHESTRATOR_GROUP,
    QUANTUM_EXECUTOR_GROUP,
    CLASSICAL_FALLBACK_GROUP,
    RESULTS_SINK_GROUP,
)


def topic(name: str) -> TopicSpec:
    """Look up a topic by name.

    Raises:
        KeyError: Unknown topic.
    """
    for spec in ALL_TOPICS:
        if spec.name == name:
            return spec
    raise KeyError(name)


def subjects() -> tuple[str, ...]:
    """The distinct Avro record names carried by the topics (schema subjects)."""
    return tuple(dict.fromkeys(spec.record for spec in ALL_TOPICS))
