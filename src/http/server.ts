/**
 * The HTTP surface of `serve`: liveness, readiness and a JSON view of runs.
 *   GET /healthz          200 while the process runs
 *   GET /readyz           200 when Postgres, Redis and Kafka answer and the consumer joined
 *   GET /api/runs         the latest runs
 *   GET /api/runs/:id     one run
 */
import { createServer, type Server } from 'node:http';
import type { Db } from '../db.ts';
import type { Logger } from '../logger.ts';
import { getRunStatus, listRuns } from '../runs/run-store.ts';

export interface HttpDeps {
  db: Db;
  log: Logger;
  readiness(): Promise<Record<string, boolean>>;
}

export function startHttpServer(deps: HttpDeps, port: number): Promise<Server> {
  const server = createServer((req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const url = new URL(req.url ?? '/', 'http://localhost');
    const handle = async () => {
      if (req.method !== 'GET') return send(405, { error: 'method not allowed' });
      if (url.pathname === '/healthz') return send(200, { status: 'ok' });
      if (url.pathname === '/readyz') {
        const checks = await deps.readiness();
        const ready = Object.values(checks).every(Boolean);
        return send(ready ? 200 : 503, { status: ready ? 'ready' : 'not ready', checks });
      }
      if (url.pathname === '/api/runs') return send(200, await listRuns(deps.db.pool));
      const match = /^\/api\/runs\/(\d{1,15})$/.exec(url.pathname);
      if (match) {
        const run = await getRunStatus(deps.db.pool, Number(match[1]));
        return run ? send(200, run) : send(404, { error: `run ${match[1]} not found` });
      }
      return send(404, { error: 'not found' });
    };
    handle().catch((error: unknown) => {
      deps.log.warn({ err: String(error), path: url.pathname }, 'http request failed');
      if (!res.headersSent) send(500, { error: 'internal error' });
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '0.0.0.0', () => resolve(server));
  });
}
