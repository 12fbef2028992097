/**
 * Runs claimed one-time tasks: claims in batches sized to the free slots, heartbeats each
 * running task, wakes on Redis signals (polling stays as the fallback) and drains on stop.
 *
 * @example
 *   const executor = new TaskExecutor({ ...deps, handler: (task, control) => work(task, control) });
 *   executor.start();
 *   await executor.stop(20000);
 */
import type { Db } from '../db.ts';
import { FencedError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { type ClaimedTask, claimDueTasks, heartbeat } from './task-store.ts';

/** What a running task's handler watches: set by the executor, read between pages. */
export interface TaskControlState {
  /** Set when the heartbeat found the task taken away. */
  lost: boolean;
  /** Set when the instance is shutting down: checkpoint and give the task back. */
  stopping: boolean;
}

export interface TaskExecutorOptions {
  db: Db;
  log: Logger;
  instanceId: string;
  concurrency: number;
  pollIntervalMs: number;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  handler(task: ClaimedTask, control: TaskControlState): Promise<unknown>;
  /** Called when the handler throws anything but a FencedError. */
  onFailure(task: ClaimedTask, error: unknown): Promise<void>;
  onClaim?(task: ClaimedTask): void;
}

export class TaskExecutor {
  private readonly options: TaskExecutorOptions;
  private readonly running = new Map<string, { control: TaskControlState; done: Promise<void> }>();
  private stopping = false;
  private loop: Promise<void> | undefined;
  private wakeUp: (() => void) | undefined;
  private pendingWake = false;

  constructor(options: TaskExecutorOptions) {
    this.options = options;
  }

  get activeTasks(): number {
    return this.running.size;
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Makes the loop claim at once (a task was scheduled or a slot freed). */
  wake(): void {
    this.pendingWake = true;
    this.wakeUp?.();
  }

  private waitForWake(ms: number): Promise<void> {
    if (this.pendingWake) {
      this.pendingWake = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wakeUp = undefined;
        this.pendingWake = false;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakeUp = done;
    });
  }

  private async run(): Promise<void> {
    const { log } = this.options;
    while (!this.stopping) {
      const free = this.options.concurrency - this.running.size;
      let claimed: ClaimedTask[] = [];
      if (free > 0) {
        try {
          claimed = await claimDueTasks(this.options.db.pool, {
            instanceId: this.options.instanceId,
            limit: free,
            deadAfterMs: this.options.heartbeatTimeoutMs,
          });
        } catch (error) {
          log.warn({ err: String(error) }, 'claiming tasks failed; retrying after the poll interval');
        }
        for (const task of claimed) this.execute(task);
      }
      if (this.stopping) break;
      if (claimed.length > 0 && claimed.length === free) continue;
      await this.waitForWake(this.options.pollIntervalMs);
    }
  }

  private execute(task: ClaimedTask): void {
    const { log, instanceId, db } = this.options;
    // A claim that was in flight when stop() began is handed back at once.
    const control: TaskControlState = { lost: false, stopping: this.stopping };
    this.options.onClaim?.(task);
    const beat = setInterval(() => {
      heartbeat(db.pool, task, instanceId)
        .then((ok) => {
          if (!ok) control.lost = true;
        })
        .catch((error: unknown) => log.debug({ err: String(error) }, 'heartbeat failed'));
    }, this.options.heartbeatIntervalMs);
    const key = `${task.taskName}/${task.taskInstance}`;
    const done = (async () => {
      try {
        await this.options.handler(task, control);
      } catch (error) {
        if (error instanceof FencedError) {
          log.warn({ task: key, err: error.message }, 'task lost to another instance; stopped without writing');
        } else {
          await this.options.onFailure(task, error).catch((e: unknown) => log.error({ task: key, err: String(e) }, 'recording a task failure failed'));
        }
      } finally {
        clearInterval(beat);
        this.running.delete(key);
        this.wake();
      }
    })();
    this.running.set(key, { control, done });
  }

  /**
   * Stops claiming, asks running tasks to checkpoint and give their task back, and waits up
   * to `graceMs` for them. Returns true when every task finished in time.
   */
  async stop(graceMs: number): Promise<boolean> {
    const deadline = Date.now() + graceMs;
    this.stopping = true;
    this.wakeUp?.();
    // Let a claim in flight finish first, so that the tasks it claimed are drained too.
    await this.loop;
    for (const { control } of this.running.values()) control.stopping = true;
    const all = Promise.all([...this.running.values()].map((r) => r.done)).then(() => true);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()));
    });
    const finished = await Promise.race([all, timeout]);
    clearTimeout(timer);
    return finished;
  }
}
