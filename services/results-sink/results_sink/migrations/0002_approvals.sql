-- The approval audit trail: every reviewer decision on a job held in awaiting_approval,
-- as published by the gateway (the orchestrator applies the first one per job).
-- No foreign key to jobs: the decision and the job's envelope arrive on different topics.
CREATE TABLE approvals (
    decision_id     text        PRIMARY KEY,
    job_id          text        NOT NULL,
    decision        text        NOT NULL CHECK (decision IN ('approve', 'reject')),
    reviewer        text        NOT NULL,
    reviewer_tenant text        NOT NULL DEFAULT '',
    comment         text        NOT NULL DEFAULT '',
    correlation_id  text        NOT NULL DEFAULT '',
    decided_at      timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX approvals_job_idx ON approvals (job_id, decided_at);
