#!/bin/sh
# The orchestrator's database, and the read-only role Grafana's hub
# datasource uses (docs: deploy/README.md).
set -e
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE DATABASE orchestrator OWNER $POSTGRES_USER;
CREATE ROLE grafana_reader LOGIN PASSWORD '$GRAFANA_HUB_READER_PASSWORD';
GRANT CONNECT ON DATABASE $POSTGRES_DB TO grafana_reader;
GRANT USAGE ON SCHEMA public TO grafana_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE $POSTGRES_USER IN SCHEMA public GRANT SELECT ON TABLES TO grafana_reader;
SQL
