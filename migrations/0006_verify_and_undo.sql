-- 0006_verify_and_undo: proving a run (tranche verify) and taking one back (tranche undo).
-- Append-only: never edit a migration that has shipped; add a new file.

-- A run that undoes another (undo_of: the run whose changes it moves back; undoing an undo
-- is a redo), and how many of that run's rows it left alone because the application changed
-- them since. verdict: the last verification of the run ('holds', or which partitions do
-- not), written by completion and by `tranche verify`.
ALTER TABLE migration_runs
  ADD COLUMN undo_of bigint REFERENCES migration_runs (id),
  ADD COLUMN undo_skipped bigint,
  ADD COLUMN verdict text,
  ADD COLUMN verified_at timestamptz;

-- What one partition held when the run was first verified (at completion, or by the first
-- `tranche verify`): rows in its range, how many had reached the target or gone beyond it,
-- and a checksum of the key and the migrated (`set`) columns over the range. A later verify
-- compares against it: rows that vanished, moved beyond the target, or changed since.
CREATE TABLE partition_checks (
  partition_id bigint PRIMARY KEY REFERENCES partitions (id) ON DELETE CASCADE,
  run_id       bigint NOT NULL,
  rows_present bigint NOT NULL,
  rows_reached bigint,
  rows_beyond  bigint,
  checksum     text NOT NULL,
  checked_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX partition_checks_run ON partition_checks (run_id);

-- The applied log of definitions that declare `undo`, written by the same statement that
-- applies a batch: ONE row per applied batch and partition (a row per changed row, with its
-- index entry, cost the forward run a third of its speed: docs/benchmarks.md). keys: the
-- changed rows' keys; carried and written: one row per key (two-dimensional), the record's
-- carried values (where the row came from) and the row's `set` columns right after the
-- change, as text, so an undo can tell which rows still hold what the run wrote.
CREATE TABLE applied_batches (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  run_id       bigint NOT NULL,
  partition_id bigint NOT NULL,
  keys         text[] NOT NULL,
  carried      text[],
  written      text[] NOT NULL
);
CREATE INDEX applied_batches_run ON applied_batches (run_id);
-- Stored uncompressed: compressing a batch's arrays cost the apply statement CPU on every
-- batch, to save disk the log gives back once a run will not be undone.
ALTER TABLE applied_batches
  ALTER COLUMN keys SET STORAGE EXTERNAL, ALTER COLUMN carried SET STORAGE EXTERNAL, ALTER COLUMN written SET STORAGE EXTERNAL;

-- The same log one row per changed row, filled from applied_batches when an undo of the run
-- starts (the latest batch wins for a row changed twice): what the undo run pages through.
CREATE TABLE applied_rows (
  run_id       bigint NOT NULL,
  partition_id bigint NOT NULL,
  row_key      text NOT NULL,
  carried      text[] NOT NULL,
  written      text[] NOT NULL,
  PRIMARY KEY (run_id, row_key)
);
