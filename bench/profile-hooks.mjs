/**
 * Profiling hooks for one `serve` process, loaded with `node --import ./bench/profile-hooks.mjs`
 * (bench/e2e.ts passes it with `--profile`). Changes no behaviour: it times every Postgres
 * query (grouped by its first line: the `-- name:` header of a file in sql/, or the start of
 * the statement), every Kafka send, every consumer `eachBatch` call and the gaps between them,
 * and the event-loop utilisation, and writes the totals as JSON to
 * $BENCH_PROFILE_DIR/profile-<instance>.json every 2 s. SIGUSR2 from the benchmark marks the
 * measured window: the first resets the totals (run created), the second writes and freezes
 * them (run completed).
 */
// Before kafkajs, as in the service: it patches kafkajs files in the module cache.
import '../src/stream/kafkajs-patches.ts';
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';

const require = createRequire(import.meta.url);
const pg = require('pg');
const kafkajs = require('kafkajs');

const stats = new Map();
let t0 = performance.now();
let elu0 = performance.eventLoopUtilization();
let cpu0 = process.cpuUsage();
let frozen = false;
const add = (key, ms, n = 1) => {
  if (frozen) return;
  const s = stats.get(key) ?? { count: 0, ms: 0, items: 0, maxMs: 0 };
  s.count += 1;
  s.ms += ms;
  s.items += n;
  s.maxMs = Math.max(s.maxMs, ms);
  stats.set(key, s);
};

function sqlKey(text) {
  const t = String(text).trim();
  const header = /^--\s*([a-z0-9-]+):/.exec(t);
  if (header) return `sql ${header[1]}`;
  return `sql ${t.replace(/\s+/g, ' ').slice(0, 70)}`;
}

/** Times a query's promise under its sql/ name (or first words). */
function timedQuery(config, run) {
  const key = sqlKey(typeof config === 'string' ? config : config?.text);
  const start = performance.now();
  return run().then(
    (r) => {
      add(key, performance.now() - start, r?.rowCount ?? 0);
      return r;
    },
    (e) => {
      add(`${key} (error)`, performance.now() - start);
      throw e;
    },
  );
}

const originalQuery = pg.Client.prototype.query;
pg.Client.prototype.query = function query(config, values, callback) {
  if (typeof callback === 'function' || typeof values === 'function' || (config && typeof config.submit === 'function')) {
    return originalQuery.call(this, config, values, callback);
  }
  return timedQuery(config, () => originalQuery.call(this, config, values));
};

// pool.query (no callback) hands its client a callback, so it is timed here instead, pool wait included.
const originalPoolQuery = pg.Pool.prototype.query;
pg.Pool.prototype.query = function query(config, values, callback) {
  if (typeof callback === 'function' || typeof values === 'function') return originalPoolQuery.call(this, config, values, callback);
  return timedQuery(config, () => originalPoolQuery.call(this, config, values));
};

const originalProducer = kafkajs.Kafka.prototype.producer;
kafkajs.Kafka.prototype.producer = function producer(...a) {
  const p = originalProducer.apply(this, a);
  const send = p.send.bind(p);
  p.send = async (record) => {
    const start = performance.now();
    try {
      return await send(record);
    } finally {
      add(`kafka send ${record.topic}`, performance.now() - start, record.messages.length);
    }
  };
  return p;
};

const originalConsumer = kafkajs.Kafka.prototype.consumer;
kafkajs.Kafka.prototype.consumer = function consumer(...a) {
  const c = originalConsumer.apply(this, a);
  const run = c.run.bind(c);
  c.run = (config) => {
    if (config?.eachBatch) {
      const eachBatch = config.eachBatch;
      let lastEnd = null;
      config = {
        ...config,
        eachBatch: async (payload) => {
          const start = performance.now();
          if (lastEnd !== null) add('consumer gap between batches', start - lastEnd);
          try {
            return await eachBatch(payload);
          } finally {
            lastEnd = performance.now();
            add('consumer eachBatch', lastEnd - start, payload.batch.messages.length);
          }
        },
      };
    }
    return run(config);
  };
  return c;
};

// Peak of each part of the memory (is the RSS the JS heap, or buffers outside it?).
const memPeak = { rss: 0, heapTotal: 0, heapUsed: 0, external: 0, arrayBuffers: 0 };
setInterval(() => {
  const m = process.memoryUsage();
  for (const k of Object.keys(memPeak)) memPeak[k] = Math.max(memPeak[k], Math.round(m[k] / 1048576));
}, 250).unref();

function dump() {
  if (frozen) return;
  const dir = process.env.BENCH_PROFILE_DIR;
  if (!dir) return;
  const elu = performance.eventLoopUtilization(elu0);
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const rows = [...stats.entries()].map(([key, s]) => ({ key, ...s })).sort((x, y) => y.ms - x.ms);
  writeFileSync(
    `${dir}/profile-${process.env.INSTANCE_ID ?? process.pid}.json`,
    `${JSON.stringify({ memPeakMb: memPeak, wallMs, eventLoopUtilization: elu.utilization, cpuUserMs: cpu.user / 1000, cpuSystemMs: cpu.system / 1000, stats: rows }, null, 2)}\n`,
  );
}
setInterval(dump, 2000).unref();
process.on('exit', dump);
// The benchmark sends SIGUSR2 when the run starts (reset) and when it ended (write, freeze).
let signals = 0;
process.on('SIGUSR2', () => {
  signals += 1;
  if (signals === 1) {
    stats.clear();
    t0 = performance.now();
    elu0 = performance.eventLoopUtilization();
    cpu0 = process.cpuUsage();
  } else {
    dump();
    frozen = true;
  }
});
