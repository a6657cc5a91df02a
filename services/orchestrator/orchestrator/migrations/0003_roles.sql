-- Least-privilege role (NOLOGIN group; operators or the devstack add a LOGIN member):
-- qbridge_orchestrator owns the orch_* tables, its history and the outbox sequence.
-- Nobody else gets any privilege on them (the outbox is sent to Kafka as it is).
-- Needs a migrator allowed to create roles (the database owner / CREATEROLE).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'qbridge_orchestrator') THEN
        CREATE ROLE qbridge_orchestrator NOLOGIN;
    END IF;
END
$$;

-- CREATE on the schema: later migrations (run by the orchestrator itself) may add tables.
GRANT USAGE, CREATE ON SCHEMA public TO qbridge_orchestrator;

ALTER TABLE orch_jobs OWNER TO qbridge_orchestrator;
ALTER TABLE orch_outbox OWNER TO qbridge_orchestrator;
ALTER TABLE orch_tenant_usage OWNER TO qbridge_orchestrator;
ALTER TABLE orch_usage_charges OWNER TO qbridge_orchestrator;
ALTER TABLE orch_schema_migrations OWNER TO qbridge_orchestrator;
