-- Why a run is paused, and whether it ignores the work window.
--   pause_reason NULL: paused by an operator (or not paused); 'window': outside the work window,
--   resumed by tranche itself when the next window opens; 'critical: …': the health hard stop
--   (a signal far beyond its limit), resumed by an operator.
--   ignore_window: a run started by hand with `tranche identify --ignore-window` works at any time.
ALTER TABLE migration_runs
  ADD COLUMN pause_reason text,
  ADD COLUMN ignore_window boolean NOT NULL DEFAULT false;
