-- results-sink 0001: the provenance store.
--
-- Every table is keyed so that replays and duplicates leave exactly one row, and every
-- child table can be written before the job's envelope arrives: writers upsert a
-- placeholder `jobs` row first (envelope_received = false) and the envelope fills it in.

CREATE TABLE jobs (
    job_id            text        PRIMARY KEY,
    tenant            text,
    problem_type      text,
    problem_kind      text,                  -- Avro branch of `problem` (maxcut, qubo, ...)
    schema_version    integer,
    input_fingerprint text,
    idempotency_key   text,
    request_id        text,
    problem           jsonb,                 -- the normalized problem (Avro problem branch)
    output_shape      jsonb,
    num_variables     integer,
    num_qubits        integer,
    seed              bigint,
    priority          integer,
    fallback_policy   text,
    timeout_ms        bigint,
    deadline_at       timestamptz,
    shot_budget       bigint,
    correlation_id    text,
    tags              jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at        timestamptz,
    accepted_at       timestamptz,
    envelope_received boolean     NOT NULL DEFAULT false,
    -- latest state: from the highest-seq transition, overridden by the final outcome
    status            text,
    status_seq        integer     NOT NULL DEFAULT 0,
    status_at         timestamptz,
    route             text,
    final_at          timestamptz,
    first_seen_at     timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX jobs_tenant_created_idx ON jobs (tenant, created_at DESC);
CREATE INDEX jobs_status_idx ON jobs (status);
CREATE INDEX jobs_fingerprint_idx ON jobs (input_fingerprint);

-- One row per work item (job_id:attempt:route); `started` is upgraded to ok / error.
CREATE TABLE attempts (
    work_id        text        PRIMARY KEY,
    job_id         text        NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    attempt        integer     NOT NULL,
    route          text        NOT NULL,
    tenant         text        NOT NULL,
    status         text        NOT NULL CHECK (status IN ('started', 'ok', 'error')),
    error_class    text,
    error_type     text,
    error_message  text,
    backend        text,
    solver         text,
    assignment     bigint[],
    objective      double precision,
    feasible       boolean,
    quality        jsonb,
    candidates     jsonb       NOT NULL DEFAULT '[]'::jsonb,
    provenance     jsonb,                  -- full provenance, settings parsed into `settings`
    cost_units     double precision NOT NULL DEFAULT 0,
    duration_ms    double precision,       -- sum of the provenance timings
    correlation_id text,
    started_at     timestamptz,
    finished_at    timestamptz,
    recorded_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX attempts_job_idx ON attempts (job_id, attempt);
CREATE INDEX attempts_tenant_idx ON attempts (tenant, finished_at);

CREATE TABLE status_transitions (
    job_id         text        NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    seq            integer     NOT NULL,
    from_status    text,
    to_status      text        NOT NULL,
    reason         text        NOT NULL DEFAULT '',
    attempt        integer,
    route          text,
    backend        text,
    correlation_id text,
    at             timestamptz NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, seq)
);

-- The one final outcome of a job (first one wins).
CREATE TABLE solutions (
    job_id                text        PRIMARY KEY REFERENCES jobs (job_id) ON DELETE CASCADE,
    tenant                text        NOT NULL,
    status                text        NOT NULL,
    reason                text        NOT NULL DEFAULT '',
    problem_type          text        NOT NULL,
    input_fingerprint     text        NOT NULL,
    route                 text,
    backend               text,
    solver                text,
    assignment            bigint[],
    objective             double precision,
    feasible              boolean,
    frequency             double precision,
    proven_optimal        boolean,
    bound                 double precision,
    gap                   double precision,
    expected_objective    double precision,
    confidence            double precision,
    quantum_classical_gap double precision,
    attempts              integer     NOT NULL,
    provenance            jsonb,
    correlation_id        text,
    completed_at          timestamptz NOT NULL,
    recorded_at           timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX solutions_tenant_completed_idx ON solutions (tenant, completed_at DESC);

-- Top-N candidates of the final outcome, rank 1 = best.
CREATE TABLE candidates (
    job_id     text             NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    rank       integer          NOT NULL CHECK (rank >= 1),
    assignment bigint[]         NOT NULL,
    objective  double precision NOT NULL,
    feasible   boolean          NOT NULL,
    frequency  double precision,
    PRIMARY KEY (job_id, rank)
);

-- Costs: one row per finished attempt (the cost is charged whether it succeeded or not).
CREATE VIEW costs AS
SELECT job_id, work_id, tenant, route, backend, cost_units, finished_at
FROM attempts
WHERE status <> 'started';

CREATE VIEW tenant_costs AS
SELECT tenant,
       route,
       count(*)                  AS attempts,
       count(DISTINCT job_id)    AS jobs,
       sum(cost_units)           AS cost_units,
       min(finished_at)          AS first_at,
       max(finished_at)          AS last_at
FROM costs
GROUP BY tenant, route;
