/**
 * The HTTP surface of `serve`:
 *   GET /                          dashboard (runs and each partition's progress, live)
 *   GET /healthz                   200 while the process runs
 *   GET /readyz                    200 while Postgres and Redis answer and the update consumer is in its group, else 503
 *   GET /metrics                   Prometheus text format
 *   GET /api/runs                  the latest runs
 *   GET /api/runs/:id              one run
 *   GET /api/runs/:id/partitions   its partitions (?state=failed to filter)
 * Every endpoint is read-only; operator actions go through the CLI.
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Db } from '../db.ts';
import type { Logger } from '../logger.ts';
import { getRunStatus, listRuns } from '../runs/run-store.ts';
import { listPartitions } from '../runs/partition-list.ts';
import type { PartitionState } from '../schema.ts';
import type { Metrics } from './metrics.ts';

const DASHBOARD = readFileSync(new URL('./dashboard.html', import.meta.url), 'utf8');
const STATES: PartitionState[] = ['pending', 'running', 'completed', 'failed'];

export interface HttpDeps {
  db: Db;
  log: Logger;
  metrics: Metrics | null;
  readiness(): Promise<Record<string, boolean>>;
}

export interface HttpServer {
  readonly server: Server;
  readonly port: number;
  close(): Promise<void>;
}

export async function startHttpServer(deps: HttpDeps, port: number): Promise<HttpServer> {
  const server = createServer((req, res) => {
    const send = (status: number, body: unknown, type = 'application/json') => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(type === 'application/json' ? JSON.stringify(body) : String(body));
    };
    const url = new URL(req.url ?? '/', 'http://localhost');
    const handle = async () => {
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
      const run = /^\/api\/runs\/(\d{1,15})(\/partitions)?$/.exec(url.pathname);
      if (run) {
        const runId = Number(run[1]);
        const status = await getRunStatus(deps.db.pool, runId);
        if (!status) return send(404, { error: `run ${runId} not found` });
        if (!run[2]) return send(200, status);
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
