import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATUS_UNSPECIFIED: _ClassVar[JobStatus]
    JOB_STATUS_SUBMITTED: _ClassVar[JobStatus]
    JOB_STATUS_ACCEPTED: _ClassVar[JobStatus]
    JOB_STATUS_ROUTED: _ClassVar[JobStatus]
    JOB_STATUS_RUNNING: _ClassVar[JobStatus]
    JOB_STATUS_SUCCEEDED: _ClassVar[JobStatus]
    JOB_STATUS_DEGRADED: _ClassVar[JobStatus]
    JOB_STATUS_FAILED: _ClassVar[JobStatus]
    JOB_STATUS_EXPIRED: _ClassVar[JobStatus]
    JOB_STATUS_REJECTED: _ClassVar[JobStatus]
    JOB_STATUS_AWAITING_APPROVAL: _ClassVar[JobStatus]

class Route(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUTE_UNSPECIFIED: _ClassVar[Route]
    ROUTE_QUANTUM: _ClassVar[Route]
    ROUTE_CLASSICAL: _ClassVar[Route]

class AnswerSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ANSWER_SOURCE_UNSPECIFIED: _ClassVar[AnswerSource]
    ANSWER_SOURCE_PIPELINE: _ClassVar[AnswerSource]
    ANSWER_SOURCE_GATEWAY: _ClassVar[AnswerSource]
JOB_STATUS_UNSPECIFIED: JobStatus
JOB_STATUS_SUBMITTED: JobStatus
JOB_STATUS_ACCEPTED: JobStatus
JOB_STATUS_ROUTED: JobStatus
JOB_STATUS_RUNNING: JobStatus
JOB_STATUS_SUCCEEDED: JobStatus
JOB_STATUS_DEGRADED: JobStatus
JOB_STATUS_FAILED: JobStatus
JOB_STATUS_EXPIRED: JobStatus
JOB_STATUS_REJECTED: JobStatus
JOB_STATUS_AWAITING_APPROVAL: JobStatus
ROUTE_UNSPECIFIED: Route
ROUTE_QUANTUM: Route
ROUTE_CLASSICAL: Route
ANSWER_SOURCE_UNSPECIFIED: AnswerSource
ANSWER_SOURCE_PIPELINE: AnswerSource
ANSWER_SOURCE_GATEWAY: AnswerSource

class Problem(_message.Message):
    __slots__ = ("maxcut", "qubo", "ising", "knapsack", "portfolio", "jobshop", "json")
    MAXCUT_FIELD_NUMBER: _ClassVar[int]
    QUBO_FIELD_NUMBER: _ClassVar[int]
    ISING_FIELD_NUMBER: _ClassVar[int]
    KNAPSACK_FIELD_NUMBER: _ClassVar[int]
    PORTFOLIO_FIELD_NUMBER: _ClassVar[int]
    JOBSHOP_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    maxcut: MaxCut
    qubo: Qubo
    ising: Ising
    knapsack: Knapsack
    portfolio: Portfolio
    jobshop: JobShop
    json: JsonProblem
    def __init__(self, maxcut: _Optional[_Union[MaxCut, _Mapping]] = ..., qubo: _Optional[_Union[Qubo, _Mapping]] = ..., ising: _Optional[_Union[Ising, _Mapping]] = ..., knapsack: _Optional[_Union[Knapsack, _Mapping]] = ..., portfolio: _Optional[_Union[Portfolio, _Mapping]] = ..., jobshop: _Optional[_Union[JobShop, _Mapping]] = ..., json: _Optional[_Union[JsonProblem, _Mapping]] = ...) -> None: ...

class MaxCut(_message.Message):
    __slots__ = ("num_nodes", "edges")
    NUM_NODES_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    num_nodes: int
    edges: _containers.RepeatedCompositeFieldContainer[WeightedEdge]
    def __init__(self, num_nodes: _Optional[int] = ..., edges: _Optional[_Iterable[_Union[WeightedEdge, _Mapping]]] = ...) -> None: ...

class WeightedEdge(_message.Message):
    __slots__ = ("u", "v", "weight")
    U_FIELD_NUMBER: _ClassVar[int]
    V_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    u: int
    v: int
    weight: float
    def __init__(self, u: _Optional[int] = ..., v: _Optional[int] = ..., weight: _Optional[float] = ...) -> None: ...

class Qubo(_message.Message):
    __slots__ = ("num_variables", "linear", "quadratic", "offset")
    NUM_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    LINEAR_FIELD_NUMBER: _ClassVar[int]
    QUADRATIC_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    num_variables: int
    linear: _containers.RepeatedScalarFieldContainer[float]
    quadratic: _containers.RepeatedCompositeFieldContainer[QuadraticTerm]
    offset: float
    def __init__(self, num_variables: _Optional[int] = ..., linear: _Optional[_Iterable[float]] = ..., quadratic: _Optional[_Iterable[_Union[QuadraticTerm, _Mapping]]] = ..., offset: _Optional[float] = ...) -> None: ...

class QuadraticTerm(_message.Message):
    __slots__ = ("i", "j", "value")
    I_FIELD_NUMBER: _ClassVar[int]
    J_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    i: int
    j: int
    value: float
    def __init__(self, i: _Optional[int] = ..., j: _Optional[int] = ..., value: _Optional[float] = ...) -> None: ...

class Ising(_message.Message):
    __slots__ = ("h", "couplings", "offset")
    H_FIELD_NUMBER: _ClassVar[int]
    COUPLINGS_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    h: _containers.RepeatedScalarFieldContainer[float]
    couplings: _containers.RepeatedCompositeFieldContainer[QuadraticTerm]
    offset: float
    def __init__(self, h: _Optional[_Iterable[float]] = ..., couplings: _Optional[_Iterable[_Union[QuadraticTerm, _Mapping]]] = ..., offset: _Optional[float] = ...) -> None: ...

class Knapsack(_message.Message):
    __slots__ = ("values", "weights", "capacity")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    weights: _containers.RepeatedScalarFieldContainer[int]
    capacity: int
    def __init__(self, values: _Optional[_Iterable[float]] = ..., weights: _Optional[_Iterable[int]] = ..., capacity: _Optional[int] = ...) -> None: ...

class Portfolio(_message.Message):
    __slots__ = ("expected_returns", "covariance", "budget", "risk_aversion")
    EXPECTED_RETURNS_FIELD_NUMBER: _ClassVar[int]
    COVARIANCE_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    RISK_AVERSION_FIELD_NUMBER: _ClassVar[int]
    expected_returns: _containers.RepeatedScalarFieldContainer[float]
    covariance: _containers.RepeatedCompositeFieldContainer[Row]
    budget: int
    risk_aversion: float
    def __init__(self, expected_returns: _Optional[_Iterable[float]] = ..., covariance: _Optional[_Iterable[_Union[Row, _Mapping]]] = ..., budget: _Optional[int] = ..., risk_aversion: _Optional[float] = ...) -> None: ...

class Row(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class JobShop(_message.Message):
    __slots__ = ("jobs",)
    class Job(_message.Message):
        __slots__ = ("operations",)
        OPERATIONS_FIELD_NUMBER: _ClassVar[int]
        operations: _containers.RepeatedCompositeFieldContainer[JobShop.Operation]
        def __init__(self, operations: _Optional[_Iterable[_Union[JobShop.Operation, _Mapping]]] = ...) -> None: ...
    class Operation(_message.Message):
        __slots__ = ("machine", "duration")
        MACHINE_FIELD_NUMBER: _ClassVar[int]
        DURATION_FIELD_NUMBER: _ClassVar[int]
        machine: int
        duration: int
        def __init__(self, machine: _Optional[int] = ..., duration: _Optional[int] = ...) -> None: ...
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobShop.Job]
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobShop.Job, _Mapping]]] = ...) -> None: ...

class JsonProblem(_message.Message):
    __slots__ = ("type", "json")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    type: str
    json: str
    def __init__(self, type: _Optional[str] = ..., json: _Optional[str] = ...) -> None: ...

class JobOptions(_message.Message):
    __slots__ = ("idempotency_key", "fallback_policy", "priority", "shot_budget", "seed", "correlation_id", "tags", "timeout_ms", "backend")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_POLICY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    SHOT_BUDGET_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    fallback_policy: str
    priority: int
    shot_budget: int
    seed: int
    correlation_id: str
    tags: _containers.ScalarMap[str, str]
    timeout_ms: int
    backend: str
    def __init__(self, idempotency_key: _Optional[str] = ..., fallback_policy: _Optional[str] = ..., priority: _Optional[int] = ..., shot_budget: _Optional[int] = ..., seed: _Optional[int] = ..., correlation_id: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., timeout_ms: _Optional[int] = ..., backend: _Optional[str] = ...) -> None: ...

class Solution(_message.Message):
    __slots__ = ("assignment", "objective", "feasible", "frequency")
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    FEASIBLE_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    assignment: _containers.RepeatedScalarFieldContainer[int]
    objective: float
    feasible: bool
    frequency: float
    def __init__(self, assignment: _Optional[_Iterable[int]] = ..., objective: _Optional[float] = ..., feasible: _Optional[bool] = ..., frequency: _Optional[float] = ...) -> None: ...

class Quality(_message.Message):
    __slots__ = ("proven_optimal", "bound", "gap", "expected_objective", "confidence")
    PROVEN_OPTIMAL_FIELD_NUMBER: _ClassVar[int]
    BOUND_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    proven_optimal: bool
    bound: float
    gap: float
    expected_objective: float
    confidence: float
    def __init__(self, proven_optimal: _Optional[bool] = ..., bound: _Optional[float] = ..., gap: _Optional[float] = ..., expected_objective: _Optional[float] = ..., confidence: _Optional[float] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("queue_ms", "transpile_ms", "execute_ms", "postprocess_ms")
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    TRANSPILE_MS_FIELD_NUMBER: _ClassVar[int]
    EXECUTE_MS_FIELD_NUMBER: _ClassVar[int]
    POSTPROCESS_MS_FIELD_NUMBER: _ClassVar[int]
    queue_ms: float
    transpile_ms: float
    execute_ms: float
    postprocess_ms: float
    def __init__(self, queue_ms: _Optional[float] = ..., transpile_ms: _Optional[float] = ..., execute_ms: _Optional[float] = ..., postprocess_ms: _Optional[float] = ...) -> None: ...

class Provenance(_message.Message):
    __slots__ = ("route", "solver", "backend", "backend_version", "sdk_versions", "settings_json", "circuit_depth", "circuit_width", "shots", "seed", "optimizer_iterations", "timings", "cache_hit", "cost_units")
    class SdkVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    SOLVER_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    BACKEND_VERSION_FIELD_NUMBER: _ClassVar[int]
    SDK_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_JSON_FIELD_NUMBER: _ClassVar[int]
    CIRCUIT_DEPTH_FIELD_NUMBER: _ClassVar[int]
    CIRCUIT_WIDTH_FIELD_NUMBER: _ClassVar[int]
    SHOTS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    COST_UNITS_FIELD_NUMBER: _ClassVar[int]
    route: Route
    solver: str
    backend: str
    backend_version: str
    sdk_versions: _containers.ScalarMap[str, str]
    settings_json: str
    circuit_depth: int
    circuit_width: int
    shots: int
    seed: int
    optimizer_iterations: int
    timings: Timings
    cache_hit: bool
    cost_units: float
    def __init__(self, route: _Optional[_Union[Route, str]] = ..., solver: _Optional[str] = ..., backend: _Optional[str] = ..., backend_version: _Optional[str] = ..., sdk_versions: _Optional[_Mapping[str, str]] = ..., settings_json: _Optional[str] = ..., circuit_depth: _Optional[int] = ..., circuit_width: _Optional[int] = ..., shots: _Optional[int] = ..., seed: _Optional[int] = ..., optimizer_iterations: _Optional[int] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., cache_hit: _Optional[bool] = ..., cost_units: _Optional[float] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("status", "reason", "route", "solution", "candidates", "quality", "provenance", "attempts", "quantum_classical_gap", "completed_at")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    SOLUTION_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    QUANTUM_CLASSICAL_GAP_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    status: JobStatus
    reason: str
    route: Route
    solution: Solution
    candidates: _containers.RepeatedCompositeFieldContainer[Solution]
    quality: Quality
    provenance: Provenance
    attempts: int
    quantum_classical_gap: float
    completed_at: _timestamp_pb2.Timestamp
    def __init__(self, status: _Optional[_Union[JobStatus, str]] = ..., reason: _Optional[str] = ..., route: _Optional[_Union[Route, str]] = ..., solution: _Optional[_Union[Solution, _Mapping]] = ..., candidates: _Optional[_Iterable[_Union[Solution, _Mapping]]] = ..., quality: _Optional[_Union[Quality, _Mapping]] = ..., provenance: _Optional[_Union[Provenance, _Mapping]] = ..., attempts: _Optional[int] = ..., quantum_classical_gap: _Optional[float] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StatusTransition(_message.Message):
    __slots__ = ("job_id", "seq", "from_status", "to_status", "reason", "attempt", "route", "backend", "at")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    FROM_STATUS_FIELD_NUMBER: _ClassVar[int]
    TO_STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    seq: int
    from_status: JobStatus
    to_status: JobStatus
    reason: str
    attempt: int
    route: Route
    backend: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, job_id: _Optional[str] = ..., seq: _Optional[int] = ..., from_status: _Optional[_Union[JobStatus, str]] = ..., to_status: _Optional[_Union[JobStatus, str]] = ..., reason: _Optional[str] = ..., attempt: _Optional[int] = ..., route: _Optional[_Union[Route, str]] = ..., backend: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SolveRequest(_message.Message):
    __slots__ = ("problem", "deadline_ms", "options")
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    problem: Problem
    deadline_ms: int
    options: JobOptions
    def __init__(self, problem: _Optional[_Union[Problem, _Mapping]] = ..., deadline_ms: _Optional[int] = ..., options: _Optional[_Union[JobOptions, _Mapping]] = ...) -> None: ...

class SolveResponse(_message.Message):
    __slots__ = ("job_id", "source", "result", "job_status", "elapsed_ms", "deadline_ms", "problem_type")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    JOB_STATUS_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_TYPE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    source: AnswerSource
    result: Result
    job_status: JobStatus
    elapsed_ms: float
    deadline_ms: int
    problem_type: str
    def __init__(self, job_id: _Optional[str] = ..., source: _Optional[_Union[AnswerSource, str]] = ..., result: _Optional[_Union[Result, _Mapping]] = ..., job_status: _Optional[_Union[JobStatus, str]] = ..., elapsed_ms: _Optional[float] = ..., deadline_ms: _Optional[int] = ..., problem_type: _Optional[str] = ...) -> None: ...

class SubmitRequest(_message.Message):
    __slots__ = ("problem", "options")
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    problem: Problem
    options: JobOptions
    def __init__(self, problem: _Optional[_Union[Problem, _Mapping]] = ..., options: _Optional[_Union[JobOptions, _Mapping]] = ...) -> None: ...

class SubmitResponse(_message.Message):
    __slots__ = ("job_id", "idempotency_key", "input_fingerprint", "status", "problem_type", "timeout_ms")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    INPUT_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_TYPE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    idempotency_key: str
    input_fingerprint: str
    status: JobStatus
    problem_type: str
    timeout_ms: int
    def __init__(self, job_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., input_fingerprint: _Optional[str] = ..., status: _Optional[_Union[JobStatus, str]] = ..., problem_type: _Optional[str] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id", "include_transitions", "include_attempts")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_TRANSITIONS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    include_transitions: bool
    include_attempts: bool
    def __init__(self, job_id: _Optional[str] = ..., include_transitions: _Optional[bool] = ..., include_attempts: _Optional[bool] = ...) -> None: ...

class Attempt(_message.Message):
    __slots__ = ("work_id", "attempt", "route", "backend", "solver", "status", "error_class", "error_message", "objective", "feasible", "duration_ms", "cost_units", "started_at", "finished_at")
    WORK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    SOLVER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CLASS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    FEASIBLE_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    COST_UNITS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    work_id: str
    attempt: int
    route: Route
    backend: str
    solver: str
    status: str
    error_class: str
    error_message: str
    objective: float
    feasible: bool
    duration_ms: float
    cost_units: float
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    def __init__(self, work_id: _Optional[str] = ..., attempt: _Optional[int] = ..., route: _Optional[_Union[Route, str]] = ..., backend: _Optional[str] = ..., solver: _Optional[str] = ..., status: _Optional[str] = ..., error_class: _Optional[str] = ..., error_message: _Optional[str] = ..., objective: _Optional[float] = ..., feasible: _Optional[bool] = ..., duration_ms: _Optional[float] = ..., cost_units: _Optional[float] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "tenant", "problem_type", "status", "route", "idempotency_key", "correlation_id", "input_fingerprint", "priority", "fallback_policy", "timeout_ms", "num_variables", "num_qubits", "tags", "created_at", "accepted_at", "deadline_at", "final_at", "result", "transitions", "attempts", "rejection_reason")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_POLICY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    NUM_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    NUM_QUBITS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_AT_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_AT_FIELD_NUMBER: _ClassVar[int]
    FINAL_AT_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    TRANSITIONS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    REJECTION_REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    tenant: str
    problem_type: str
    status: JobStatus
    route: Route
    idempotency_key: str
    correlation_id: str
    input_fingerprint: str
    priority: int
    fallback_policy: str
    timeout_ms: int
    num_variables: int
    num_qubits: int
    tags: _containers.ScalarMap[str, str]
    created_at: _timestamp_pb2.Timestamp
    accepted_at: _timestamp_pb2.Timestamp
    deadline_at: _timestamp_pb2.Timestamp
    final_at: _timestamp_pb2.Timestamp
    result: Result
    transitions: _containers.RepeatedCompositeFieldContainer[StatusTransition]
    attempts: _containers.RepeatedCompositeFieldContainer[Attempt]
    rejection_reason: str
    def __init__(self, job_id: _Optional[str] = ..., tenant: _Optional[str] = ..., problem_type: _Optional[str] = ..., status: _Optional[_Union[JobStatus, str]] = ..., route: _Optional[_Union[Route, str]] = ..., idempotency_key: _Optional[str] = ..., correlation_id: _Optional[str] = ..., input_fingerprint: _Optional[str] = ..., priority: _Optional[int] = ..., fallback_policy: _Optional[str] = ..., timeout_ms: _Optional[int] = ..., num_variables: _Optional[int] = ..., num_qubits: _Optional[int] = ..., tags: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., accepted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deadline_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., final_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., result: _Optional[_Union[Result, _Mapping]] = ..., transitions: _Optional[_Iterable[_Union[StatusTransition, _Mapping]]] = ..., attempts: _Optional[_Iterable[_Union[Attempt, _Mapping]]] = ..., rejection_reason: _Optional[str] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id", "after_seq")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    after_seq: int
    def __init__(self, job_id: _Optional[str] = ..., after_seq: _Optional[int] = ...) -> None: ...

class JobUpdate(_message.Message):
    __slots__ = ("transition", "result", "final")
    TRANSITION_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    transition: StatusTransition
    result: Result
    final: bool
    def __init__(self, transition: _Optional[_Union[StatusTransition, _Mapping]] = ..., result: _Optional[_Union[Result, _Mapping]] = ..., final: _Optional[bool] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "statuses", "problem_type")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_TYPE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    statuses: _containers.RepeatedScalarFieldContainer[JobStatus]
    problem_type: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[JobStatus, str]]] = ..., problem_type: _Optional[str] = ...) -> None: ...

class JobSummary(_message.Message):
    __slots__ = ("job_id", "problem_type", "status", "route", "reason", "objective", "feasible", "created_at", "final_at", "correlation_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    FEASIBLE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINAL_AT_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    problem_type: str
    status: JobStatus
    route: Route
    reason: str
    objective: float
    feasible: bool
    created_at: _timestamp_pb2.Timestamp
    final_at: _timestamp_pb2.Timestamp
    correlation_id: str
    def __init__(self, job_id: _Optional[str] = ..., problem_type: _Optional[str] = ..., status: _Optional[_Union[JobStatus, str]] = ..., route: _Optional[_Union[Route, str]] = ..., reason: _Optional[str] = ..., objective: _Optional[float] = ..., feasible: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., final_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., correlation_id: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobSummary]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobSummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ApprovalRequest(_message.Message):
    __slots__ = ("job_id", "comment")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    comment: str
    def __init__(self, job_id: _Optional[str] = ..., comment: _Optional[str] = ...) -> None: ...

class ApprovalResponse(_message.Message):
    __slots__ = ("decision_id", "job_id", "decision", "reviewer", "decided_at")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    job_id: str
    decision: str
    reviewer: str
    decided_at: _timestamp_pb2.Timestamp
    def __init__(self, decision_id: _Optional[str] = ..., job_id: _Optional[str] = ..., decision: _Optional[str] = ..., reviewer: _Optional[str] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListPendingRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ErrorDetail(_message.Message):
    __slots__ = ("field", "reason", "error_class", "retry_after_ms")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_CLASS_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    field: str
    reason: str
    error_class: str
    retry_after_ms: int
    def __init__(self, field: _Optional[str] = ..., reason: _Optional[str] = ..., error_class: _Optional[str] = ..., retry_after_ms: _Optional[int] = ...) -> None: ...
