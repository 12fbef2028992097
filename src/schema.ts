/**
 * Table types for kysely. Timestamps are Postgres text (full microsecond precision),
 * bigints are JS numbers (checked to be safe integers when read).
 */
import type { Generated } from 'kysely';

export type RunStatus = 'identifying' | 'running' | 'paused' | 'completed' | 'failed' | 'cancelled';
export type PartitionState = 'pending' | 'running' | 'completed' | 'failed';

export interface MigrationRunsTable {
  id: Generated<number>;
  uid: Generated<string>;
  migration: string;
  trigger: 'manual' | 'cron';
  slot_key: string | null;
  status: RunStatus;
  partition_size: number;
  max_partitions: number;
  group_filter: string[] | null;
  identify_owner: string | null;
  identify_lease_until: string | null;
  created_at: Generated<string>;
  identified_at: string | null;
  completed_at: string | null;
  completion_published: Generated<boolean>;
  last_error: string | null;
  undo_of: number | null;
  undo_skipped: number | null;
  verdict: string | null;
  verified_at: string | null;
}

export interface RunGroupsTable {
  run_id: number;
  group_key: string;
  target: string | null;
  identified: Generated<boolean>;
  partitions: Generated<number>;
  rows_total: Generated<number>;
}

export interface PartitionsTable {
  id: Generated<number>;
  run_id: number;
  group_key: string;
  target: string | null;
  seq: number;
  lower_pos: string;
  lower_key: string;
  upper_pos: string;
  upper_key: string;
  offset_pos: string | null;
  offset_key: string | null;
  row_count: number;
  rows_produced: Generated<number>;
  rows_applied: Generated<number>;
  completed: Generated<boolean>;
  state: Generated<PartitionState>;
  attempts: Generated<number>;
  last_error: string | null;
  started_at: string | null;
  completed_at: string | null;
  updated_at: Generated<string>;
}

export interface GroupProgressTable {
  migration: string;
  group_key: string;
  target: string | null;
  updated_at: Generated<string>;
}

export interface ScheduledTasksTable {
  task_name: string;
  task_instance: string;
  task_data: unknown;
  execution_time: string;
  picked: Generated<boolean>;
  picked_by: string | null;
  last_heartbeat: string | null;
  version: Generated<number>;
  consecutive_failures: Generated<number>;
  last_success: string | null;
  last_failure: string | null;
  priority: Generated<number>;
}

export interface CronSlotsTable {
  slot_key: string;
  migration: string;
  fired_by: string;
  fired_at: Generated<string>;
  run_id: number | null;
  outcome: string;
}

export interface DeadLettersTable {
  id: Generated<number>;
  run_id: number | null;
  partition_id: number | null;
  source_topic: string;
  source_partition: number;
  source_offset: number;
  record_key: string | null;
  reason: string;
  payload: string | null;
  created_at: Generated<string>;
}

export interface Database {
  migration_runs: MigrationRunsTable;
  run_groups: RunGroupsTable;
  group_progress: GroupProgressTable;
  partitions: PartitionsTable;
  scheduled_tasks: ScheduledTasksTable;
  cron_slots: CronSlotsTable;
  dead_letters: DeadLettersTable;
}
