import { describe, expect, it } from 'vitest';
import { MAX_REQUEST_BYTES, type OutgoingMessage, splitByBytes } from '../../src/stream/kafka.ts';

const message = (key: string, value: string, headers?: Record<string, string>): OutgoingMessage => ({ key, value, ...(headers ? { headers } : {}) });
/** What a record of these strings may take in a batch (the bound splitByBytes keeps to). */
const bytes = (m: OutgoingMessage) =>
  24 +
  Buffer.byteLength(m.key) +
  Buffer.byteLength(m.value) +
  Object.entries(m.headers ?? {}).reduce((n, [k, v]) => n + 10 + Buffer.byteLength(k) + Buffer.byteLength(v), 0);

describe('splitByBytes: a send cut into produce requests a broker accepts', () => {
  it('keeps a page of ordinary update records in one request', () => {
    const record = (i: number) => message(String(i), `{"v":1,"runId":1,"partitionId":7,"id":${i},"productKey":"gold","fromVersion":1,"toVersion":2}`);
    // 2,500 (the default page) fit even at 3 bytes a character; 5,000 are measured, and fit too.
    for (const size of [2500, 5000]) {
      const page = Array.from({ length: size }, (_, i) => record(i));
      expect(splitByBytes(page)).toEqual([page]);
    }
    // 10,000 do not: two requests, in order.
    const big = Array.from({ length: 10_000 }, (_, i) => record(i));
    const runs = splitByBytes(big);
    expect(runs).toHaveLength(2);
    expect(runs.flat()).toEqual(big);
  });

  it('cuts large records into runs under the bound, in order, losing and doubling none', () => {
    const key = 'k'.repeat(10_000);
    const page = Array.from({ length: 1000 }, (_, i) => message(String(i), `{"id":${i},"productKey":"${key}"}`));
    const runs = splitByBytes(page);
    expect(runs.length).toBeGreaterThan(10);
    for (const run of runs) expect(run.reduce((n, m) => n + bytes(m), 0)).toBeLessThanOrEqual(MAX_REQUEST_BYTES);
    expect(runs.flat()).toEqual(page);
  });

  it('counts UTF-8 bytes and headers, not characters', () => {
    const wide = message('1', '产'.repeat(100)); // 300 bytes, 100 characters
    const bound = bytes(wide) * 3;
    expect(bytes(wide)).toBe(24 + 1 + 300);
    expect(splitByBytes([wide, wide, wide, wide], bound).map((r) => r.length)).toEqual([3, 1]);
    const withHeaders = message('1', 'x', { reason: 'r'.repeat(500) });
    expect(splitByBytes([withHeaders, withHeaders], bytes(withHeaders) + 100).map((r) => r.length)).toEqual([1, 1]);
  });

  it('sends a record larger than the bound alone, and nothing for no records', () => {
    const huge = message('1', 'x'.repeat(200));
    const small = message('2', 'y');
    expect(splitByBytes([small, huge, small], 100)).toEqual([[small], [huge], [small]]);
    expect(splitByBytes([])).toEqual([]);
  });
});
