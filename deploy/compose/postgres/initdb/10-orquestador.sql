-- Runs once, when the postgres service initialises an empty data volume (docker-entrypoint-initdb.d).
-- POSTGRES_DB creates `gel` (GEL_DATABASE_URL: message log, catalog, operational records, reply deadlines);
-- the orchestrator keeps its instances, timers, tasks and outbox in a database of its own
-- (GEL_ORCHESTRATOR_DATABASE_URL), so each can be backed up and restored on its own schedule.
CREATE DATABASE gel_orquestador OWNER gel;
