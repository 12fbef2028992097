/**
 * Table types for kysely. Timestamps are Postgres text (full microsecond precision),
 * bigints are JS numbers (checked to be safe integers when read).
 */
import type { Generated } from 'kysely';

export type RunStatus = 'identifying' | 'running' | 'paused' | 'completed' | 'failed' | 'cancelled';
export type PartitionState = 'pending' | 'running' | 'completed' | 'failed';

export interface ProductsTable {
  product_key: string;
  product_version: number;
  migrated_version: number | null;
  name: Generated<string>;
  updated_at: Generated<string>;
}

export interface SubscriptionsTable {
  id: Generated<number>;
  product_key: string;
  product_version: Generated<number>;
  created_date: Generated<string>;
  customer_ref: Generated<string>;
  status: Generated<string>;
  updated_at: Generated<string>;
}

export interface MigrationRunsTable {
  id: Generated<number>;
  migration: string;
  trigger: 'manual' | 'cron';
  slot_key: string | null;
  status: RunStatus;
  partition_size: number;
  max_partitions: number;
  product_filter: string[] | null;
  identify_owner: string | null;
  identify_lease_until: string | null;
  created_at: Generated<string>;
  identified_at: string | null;
  completed_at: string | null;
  completion_published: Generated<boolean>;
  last_error: string | null;
}

export interface RunProductsTable {
  run_id: number;
  product_key: string;
  product_version: number;
  identified: Generated<boolean>;
  partitions: Generated<number>;
  rows_total: Generated<number>;
}

export interface PartitionsTable {
  id: Generated<number>;
  run_id: number;
  product_key: string;
  product_version: number;
  seq: number;
  min_created_date: string;
  min_id: number;
  max_created_date: string;
  max_id: number;
  offset_date: string | null;
  offset_id: number | null;
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
  products: ProductsTable;
  subscriptions: SubscriptionsTable;
  migration_runs: MigrationRunsTable;
  run_products: RunProductsTable;
  partitions: PartitionsTable;
  scheduled_tasks: ScheduledTasksTable;
  cron_slots: CronSlotsTable;
  dead_letters: DeadLettersTable;
}
