-- 0004_run_history: operator actions on a run (from the dashboard or the API), who/what/when.
-- Append-only: never edit a migration that has shipped; add a new file.
-- (0003 is left to work under way elsewhere; the migrator applies files in name order.)
CREATE TABLE run_events (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  run_id       bigint REFERENCES migration_runs (id) ON DELETE CASCADE,
  action       text NOT NULL,
  actor        text NOT NULL,
  detail       jsonb NOT NULL DEFAULT '{}',
  outcome      text NOT NULL CHECK (outcome IN ('ok', 'refused', 'error')),
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX run_events_run ON run_events (run_id, id);
