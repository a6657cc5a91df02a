-- The latest progress of each job's long variational (QAOA) run, from the throttled
-- qbridge.JobProgress events of the quantum executor. One row per job: an event of a later
-- attempt, of a later run of the same attempt (a redelivery) or a later event of the same
-- run replaces it; duplicate and stale events leave it as it is. The row is kept after the
-- job is final (the last progress of its run).
CREATE TABLE job_progress (
    job_id                 text             PRIMARY KEY REFERENCES jobs (job_id) ON DELETE CASCADE,
    work_id                text             NOT NULL,
    attempt                integer          NOT NULL,
    backend                text             NOT NULL DEFAULT '',
    phase                  text             NOT NULL CHECK (phase IN ('optimizing', 'finished', 'failed')),
    iteration              integer          NOT NULL,
    max_iterations         integer          NOT NULL,
    best_energy            double precision,
    resumed_from_iteration integer,
    backend_calls          integer          NOT NULL,
    shots_used             bigint           NOT NULL DEFAULT 0,
    run_started_at         timestamptz      NOT NULL,
    seq                    integer          NOT NULL,
    emitted_at             timestamptz      NOT NULL,
    correlation_id         text             NOT NULL DEFAULT '',
    recorded_at            timestamptz      NOT NULL DEFAULT now()
);

-- Owned by the sink's role like every results table (0003_roles), readable by the reader
-- role (the gateway's GetJob, the dashboard): whoever runs this migration.
ALTER TABLE job_progress OWNER TO qbridge_results_sink;
GRANT SELECT ON job_progress TO qbridge_results_reader;
