/**
 * Micro-benchmark: CPU per update record of the record codec (src/stream/update-record.ts:
 * the per-partition encoder, and decoding with validation) beside plain JSON.stringify /
 * JSON.parse of the same record. Prints microseconds per record for each side.
 *
 *   node bench/record-codec.ts [--records 300000]
 */
import { createRecordEncoder, decodeUpdateRecord, type RecordFields } from '../src/stream/update-record.ts';
import { wholeFlag } from '../src/cli/parse.ts';
import { benchArgs } from './args.ts';

const args = benchArgs(import.meta.url, { records: { type: 'string', default: '300000' } });
const n = wholeFlag('records', args.records, 1);
const rec = (i: number) => ({ v: 2, m: 'subscription-version', run: 7, p: 1 + (i % 50), k: String(1 + i), t: '2', c: ['1'] });

function time(name: string, fn: () => void): void {
  fn(); // warm up
  const t = performance.now();
  fn();
  console.log(`${((1000 * (performance.now() - t)) / n).toFixed(2).padStart(7)} µs/record  ${name}`);
}

const encoded: string[] = [];
const encoders = Array.from({ length: 50 }, (_, p) => createRecordEncoder({ migration: 'subscription-version', runId: 7, partitionId: 1 + p, target: '2' }));
time('createRecordEncoder (shared fields once, per row the key and carried values)', () => {
  encoded.length = 0;
  for (let i = 0; i < n; i++) encoded.push(encoders[i % 50]!(String(1 + i), ['1']));
});
time('JSON.stringify only', () => {
  for (let i = 0; i < n; i++) JSON.stringify(rec(i));
});
const keys = encoded.map((_, i) => Buffer.from(String(i + 1)));
const values = encoded.map((v) => Buffer.from(v));
const out: RecordFields = { migration: null, runId: 0, partitionId: 0, key: '', target: null, carried: [] };
time('decodeUpdateRecord (bytes: JSON.parse + validate)', () => {
  for (let i = 0; i < n; i++) decodeUpdateRecord(keys[i]!, values[i]!, out);
});
time('JSON.parse only (of the bytes as text)', () => {
  for (let i = 0; i < n; i++) JSON.parse(values[i]!.toString());
});
