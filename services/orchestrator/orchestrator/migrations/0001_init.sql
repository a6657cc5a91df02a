-- The orchestrator's tables: job states, the transactional outbox, tenant usage.
CREATE TABLE orch_jobs (
    job_id      text PRIMARY KEY,
    tenant      text NOT NULL,
    status      text NOT NULL,
    final       boolean NOT NULL DEFAULT false,
    timer_ms    bigint,
    fingerprint text NOT NULL,
    envelope    jsonb NOT NULL,
    state       jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orch_jobs_due ON orch_jobs (timer_ms) WHERE NOT final;
CREATE TABLE orch_outbox (
    id         bigserial PRIMARY KEY,
    job_id     text NOT NULL,
    topic      text NOT NULL,
    key        text NOT NULL,
    value      bytea NOT NULL,
    headers    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz
);
CREATE INDEX orch_outbox_unsent ON orch_outbox (id) WHERE sent_at IS NULL;
CREATE TABLE orch_tenant_usage (
    tenant     text PRIMARY KEY,
    shots      bigint NOT NULL DEFAULT 0,
    cost_units double precision NOT NULL DEFAULT 0
);
