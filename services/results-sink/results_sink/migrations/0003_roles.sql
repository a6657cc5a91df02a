-- Least-privilege roles (NOLOGIN groups; operators or the devstack add LOGIN members).
--   qbridge_results_sink:   owns the results tables (approvals included) and their history
--                           (the only writer).
--   qbridge_results_reader: SELECT only (the gateway, the dashboard, reporting).
-- Needs a migrator allowed to create roles (the database owner / CREATEROLE).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'qbridge_results_sink') THEN
        CREATE ROLE qbridge_results_sink NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'qbridge_results_reader') THEN
        CREATE ROLE qbridge_results_reader NOLOGIN;
    END IF;
END
$$;

-- CREATE on the schema: later migrations (run by the sink itself) may add tables.
GRANT USAGE, CREATE ON SCHEMA public TO qbridge_results_sink;
GRANT USAGE ON SCHEMA public TO qbridge_results_reader;

ALTER TABLE jobs OWNER TO qbridge_results_sink;
ALTER TABLE attempts OWNER TO qbridge_results_sink;
ALTER TABLE status_transitions OWNER TO qbridge_results_sink;
ALTER TABLE solutions OWNER TO qbridge_results_sink;
ALTER TABLE candidates OWNER TO qbridge_results_sink;
ALTER TABLE approvals OWNER TO qbridge_results_sink;
ALTER VIEW costs OWNER TO qbridge_results_sink;
ALTER VIEW tenant_costs OWNER TO qbridge_results_sink;
ALTER TABLE schema_migrations OWNER TO qbridge_results_sink;

-- The gateway publishes reviewers' decisions to Kafka and never writes a table itself.
GRANT SELECT ON jobs, attempts, status_transitions, solutions, candidates, approvals, costs,
    tenant_costs TO qbridge_results_reader;
-- Tables the sink creates later are readable too.
ALTER DEFAULT PRIVILEGES FOR ROLE qbridge_results_sink IN SCHEMA public
    GRANT SELECT ON TABLES TO qbridge_results_reader;
