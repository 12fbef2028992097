/**
 * Micro-benchmark: CPU per update record of the record codec (src/stream/update-record.ts:
 * validation on encode and on decode) beside plain JSON.stringify / JSON.parse of the same
 * record. Prints microseconds per record for each side.
 *
 *   node bench/record-codec.ts [--records 300000]
 */
import { decodeUpdateRecord, encodeUpdateRecord } from '../src/stream/update-record.ts';
import { wholeFlag } from '../src/cli/parse.ts';
import { benchArgs } from './args.ts';

const args = benchArgs(import.meta.url, { records: { type: 'string', default: '300000' } });
const n = wholeFlag('records', args.records, 1);
const rec = (i: number) => ({ v: 1 as const, runId: 7, partitionId: 1 + (i % 50), id: 1 + i, productKey: 'product-007', fromVersion: 1, toVersion: 2 });

function time(name: string, fn: () => void): void {
  fn(); // warm up
  const t = performance.now();
  fn();
  console.log(`${((1000 * (performance.now() - t)) / n).toFixed(2).padStart(7)} µs/record  ${name}`);
}

const encoded: string[] = [];
time('encodeUpdateRecord (validate + JSON.stringify)', () => {
  encoded.length = 0;
  for (let i = 0; i < n; i++) encoded.push(encodeUpdateRecord(rec(i)));
});
time('JSON.stringify only', () => {
  for (let i = 0; i < n; i++) JSON.stringify(rec(i));
});
time('decodeUpdateRecord (JSON.parse + validate)', () => {
  for (let i = 0; i < n; i++) decodeUpdateRecord(String(i + 1), encoded[i]!);
});
time('JSON.parse only', () => {
  for (let i = 0; i < n; i++) JSON.parse(encoded[i]!);
});
