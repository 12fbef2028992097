/**
 * The operator actions of the dashboard, over HTTP. Each calls the library function the CLI
 * calls (src/runs/run-control.ts, src/coordination/throttle.ts). A request must carry the
 * operator token (ADMIN_TOKEN) in a header, `Authorization: Bearer <token>` or
 * `X-Tranche-Token: <token>`, never a cookie or the URL, so a page on another site cannot
 * make a browser send it: without a header 401, with a wrong one 403, and with ADMIN_TOKEN
 * unset every action is refused (403) and the dashboard is read-only. Refusals change nothing
 * and are logged; every accepted action is logged and recorded in `run_events` with who
 * (the optional `X-Tranche-Operator` name and the client address), what and when.
 *
 *   POST /api/runs/:id/pause | resume | cancel | rerun-failed
 *   POST /api/partitions/:id/rerun
 *   POST /api/throttle            body {"rowsPerSecond": 2000}, 0 = unlimited, null = the configured default
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Coordination } from '../coordination/redis.ts';
import { setThrottleLimit } from '../coordination/throttle.ts';
import type { Db } from '../db.ts';
import { UserError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { recordRunEvent } from '../runs/run-history.ts';
import { cancelRun, pauseRun, rerunFailed, rerunPartition, resumeRun } from '../runs/run-control.ts';

export interface ActionDeps {
  db: Db;
  log: Logger;
  coordination: Coordination;
  redisPrefix: string;
  /** ADMIN_TOKEN; null: every action is refused. */
  adminToken: string | null;
}

export interface ActionResult {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** null when the request may act; otherwise the refusal to send. */
export function authorize(req: IncomingMessage, adminToken: string | null): ActionResult | null {
  if (adminToken === null) return { status: 403, body: { error: 'actions are disabled: ADMIN_TOKEN is not set on this instance' } };
  const bearer = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
  const header = req.headers['x-tranche-token'];
  const given = bearer ?? (typeof header === 'string' && header !== '' ? header : undefined);
  if (given === undefined) {
    return { status: 401, body: { error: 'the operator token is required (Authorization: Bearer … or X-Tranche-Token)' }, headers: { 'www-authenticate': 'Bearer realm="tranche"' } };
  }
  if (!timingSafeEqual(digest(given), digest(adminToken))) return { status: 403, body: { error: 'wrong operator token' } };
  return null;
}

function actorOf(req: IncomingMessage): string {
  const raw = req.headers['x-tranche-operator'];
  const name = typeof raw === 'string' ? raw.replace(/[^\w.@ -]/g, '').slice(0, 64).trim() : '';
  return `${name || 'operator'}@${req.socket.remoteAddress ?? 'unknown'}`;
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  let body = '';
  for await (const chunk of req) {
    body += String(chunk);
    if (body.length > 10_000) throw new UserError('request body too large');
  }
  if (body.trim() === '') return {};
  try {
    return JSON.parse(body);
  } catch {
    throw new UserError('request body is not JSON');
  }
}

const RUN_ACTION = /^\/api\/runs\/(\d{1,15})\/(pause|resume|cancel|rerun-failed)$/;
const PARTITION_ACTION = /^\/api\/partitions\/(\d{1,15})\/rerun$/;

/** True when `path` names an action (so the caller answers 405 to other methods). */
export function isActionPath(path: string): boolean {
  return RUN_ACTION.test(path) || PARTITION_ACTION.test(path) || path === '/api/throttle';
}

/** Handles a POST to an action path. */
export async function handleAction(deps: ActionDeps, req: IncomingMessage, path: string): Promise<ActionResult> {
  const actor = actorOf(req);
  const refusal = authorize(req, deps.adminToken);
  if (refusal) {
    deps.log.warn({ actor, path, status: refusal.status }, 'operator action refused');
    return refusal;
  }
  const co = deps.coordination;
  let runIds: (number | null)[];
  let action = '';
  let detail: Record<string, unknown> = {};
  const run = RUN_ACTION.exec(path);
  const partition = PARTITION_ACTION.exec(path);
  try {
    if (run) {
      const runId = Number(run[1]);
      action = run[2]!;
      runIds = [runId];
      if (action === 'pause') await pauseRun(deps.db, co, runId);
      else if (action === 'resume') await resumeRun(deps.db, co, runId);
      else if (action === 'cancel') await cancelRun(deps.db, co, runId);
      else detail = { partitionIds: await rerunFailed(deps.db, co, runId) };
    } else if (partition) {
      action = 'rerun-partition';
      const partitionId = Number(partition[1]);
      detail = { partitionId };
      runIds = [(await rerunPartition(deps.db, co, partitionId)).runId];
    } else {
      action = 'throttle';
      const body = (await readJson(req)) as { rowsPerSecond?: unknown };
      const limit = body.rowsPerSecond;
      if (limit !== null && typeof limit !== 'number') throw new UserError('rowsPerSecond must be a whole number of rows per second, 0 (unlimited) or null (the configured default)');
      try {
        await setThrottleLimit(co.client, deps.redisPrefix, limit);
      } catch (error) {
        if (error instanceof RangeError) throw new UserError(error.message);
        throw error;
      }
      await co.signal('throttle', 0);
      detail = { rowsPerSecond: limit };
      const { rows } = await deps.db.pool.query<{ id: string }>(`SELECT id FROM migration_runs WHERE status IN ('identifying', 'running', 'paused')`);
      runIds = rows.length > 0 ? rows.map((r) => Number(r.id)) : [null];
    }
  } catch (error) {
    if (!(error instanceof UserError)) throw error;
    deps.log.info({ actor, action, path, err: error.message }, 'operator action not possible');
    return { status: 409, body: { error: error.message } };
  }
  for (const runId of runIds) await recordRunEvent(deps.db.pool, { runId, action, actor, detail, outcome: 'ok' });
  deps.log.info({ actor, action, runIds, ...detail }, 'operator action');
  return { status: 200, body: { ok: true, action, runIds, ...detail } };
}
