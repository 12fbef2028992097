/**
 * The HTTP surface of `serve`:
 *   GET /                          dashboard (runs and each partition's progress, live)
 *   GET /healthz                   200 while the process runs
 *   GET /readyz                    200 while Postgres and Redis answer and the update consumer is in its group, else 503
 *   GET /metrics                   Prometheus text format
 *   GET /api/runs                  the latest runs
 *   GET /api/runs/:id              one run
 *   GET /api/runs/:id/partitions   its partitions (?state=failed to filter)
 *   GET /api/runs/:id/progress     samples over time (rows applied, consumer lag), rate, ETA, time throttled
 *   GET /api/runs/:id/history      operator actions taken on the run
 *   GET /api/control               whether actions are enabled (ADMIN_TOKEN set) and the throttle
 *   POST …                         operator actions, with the operator token: see ./actions.ts
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Db } from '../db.ts';
import type { Logger } from '../logger.ts';
import { getRunStatus, listRuns } from '../runs/run-store.ts';
import { listPartitions } from '../runs/partition-list.ts';
import type { PartitionState } from '../schema.ts';
import { getThrottleLimit } from '../coordination/throttle.ts';
import { listRunEvents } from '../runs/run-history.ts';
import { readRunProgress } from '../runs/run-progress.ts';
import { type ActionDeps, handleAction, isActionPath } from './actions.ts';
import type { Metrics } from './metrics.ts';

const DASHBOARD = readFileSync(new URL('./dashboard.html', import.meta.url), 'utf8');
const STATES: PartitionState[] = ['pending', 'running', 'completed', 'failed'];

export interface HttpDeps {
  db: Db;
  log: Logger;
  metrics: Metrics | null;
  readiness(): Promise<Record<string, boolean>>;
  /** Operator actions and the run's progress; without them the API is read-only. */
  control?: Omit<ActionDeps, 'db' | 'log'> & { defaultThrottle: number };
}

export interface HttpServer {
  readonly server: Server;
  readonly port: number;
  close(): Promise<void>;
}

export async function startHttpServer(deps: HttpDeps, port: number): Promise<HttpServer> {
  const server = createServer((req, res) => {
    const send = (status: number, body: unknown, type = 'application/json', headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', ...headers });
      res.end(type === 'application/json' ? JSON.stringify(body) : String(body));
    };
    const url = new URL(req.url ?? '/', 'http://localhost');
    const handle = async () => {
      const control = deps.control;
      if (isActionPath(url.pathname) && req.method === 'POST') {
        if (!control) return send(403, { error: 'actions are disabled on this instance' });
        const result = await handleAction({ ...control, db: deps.db, log: deps.log }, req, url.pathname);
        return send(result.status, result.body, 'application/json', result.headers);
      }
      if (url.pathname === '/api/control') {
        const set = control ? await getThrottleLimit(control.coordination.client, control.redisPrefix).catch(() => null) : null;
        return send(200, {
          actionsEnabled: Boolean(control?.adminToken),
          throttle: { rowsPerSecond: set ?? control?.defaultThrottle ?? 0, source: set === null ? 'config' : 'redis' },
        });
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, { error: 'method not allowed' });
      if (url.pathname === '/' || url.pathname === '/dashboard') return send(200, DASHBOARD, 'text/html; charset=utf-8');
      if (url.pathname === '/healthz') return send(200, { status: 'ok' });
      if (url.pathname === '/readyz') {
        const checks = await deps.readiness();
        const ready = Object.values(checks).every(Boolean);
        return send(ready ? 200 : 503, { status: ready ? 'ready' : 'not ready', checks });
      }
      if (url.pathname === '/metrics') {
        if (!deps.metrics) return send(404, { error: 'metrics disabled' });
        return send(200, await deps.metrics.registry.metrics(), deps.metrics.registry.contentType);
      }
      if (url.pathname === '/api/runs') return send(200, await listRuns(deps.db.pool, 20));
      const run = /^\/api\/runs\/(\d{1,15})(\/partitions|\/progress|\/history)?$/.exec(url.pathname);
      if (run) {
        const runId = Number(run[1]);
        const status = await getRunStatus(deps.db.pool, runId);
        if (!status) return send(404, { error: `run ${runId} not found` });
        if (!run[2]) return send(200, status);
        if (run[2] === '/history') return send(200, await listRunEvents(deps.db.pool, runId));
        if (run[2] === '/progress') {
          if (!control) return send(404, { error: 'progress is not kept by this instance' });
          return send(200, await readRunProgress(control.coordination.client, control.redisPrefix, runId, status.rows));
        }
        const state = url.searchParams.get('state');
        if (state !== null && !STATES.includes(state as PartitionState)) {
          return send(400, { error: `state must be one of ${STATES.join(', ')}` });
        }
        return send(200, await listPartitions(deps.db, runId, { state: (state as PartitionState | null) ?? undefined }));
      }
      return send(404, { error: 'not found' });
    };
    handle().catch((error: unknown) => {
      deps.log.warn({ err: String(error), path: url.pathname }, 'http request failed');
      if (!res.headersSent) send(500, { error: 'internal error' });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '0.0.0.0', () => resolve());
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
