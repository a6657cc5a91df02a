-- One charge per (job, attempt): a redelivered solver outcome must not charge twice.
CREATE TABLE orch_usage_charges (
    job_id     text NOT NULL,
    attempt    int NOT NULL,
    charged_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, attempt)
);
