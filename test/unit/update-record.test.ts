import { describe, expect, it } from 'vitest';
import { createRecordEncoder, decodeText, decodeUpdateRecord, type RecordFields } from '../../src/stream/update-record.ts';
import { prng } from '../support/prng.ts';

const fresh = (): RecordFields => ({ migration: null, runId: 0, partitionId: 0, key: '', target: null, carried: [] });
const decode = (key: string | null, value: string | null) => {
  const out = fresh();
  const rejected = decodeUpdateRecord(key === null ? null : Buffer.from(key), value === null ? null : Buffer.from(value), out);
  return { rejected, out };
};

describe('update record, version 2', () => {
  it('round-trips any key, target and carried values, quotes included', () => {
    const encode = createRecordEncoder({ migration: 'order-totals', runId: 7, partitionId: 31, target: 'v"2\\' });
    for (const key of ['42', '3f2c0d1e-0000-4000-8000-000000000001', 'Ünïcode "key" \\ with\nnewline']) {
      const value = encode(key, ['1', null, '"x"']);
      const { rejected, out } = decode(key, value);
      expect(rejected).toBeNull();
      expect(out).toEqual({ migration: 'order-totals', runId: 7, partitionId: 31, key, target: 'v"2\\', carried: ['1', null, '"x"'] });
    }
  });

  it('encodes a definition without groups with a null target', () => {
    const value = createRecordEncoder({ migration: 'm', runId: 1, partitionId: 2, target: null })('9', []);
    expect(JSON.parse(value)).toEqual({ v: 2, m: 'm', run: 1, p: 2, k: '9', t: null, c: [] });
  });

  it('refuses to encode what it could not decode', () => {
    expect(() => createRecordEncoder({ migration: 'Bad Name', runId: 1, partitionId: 1, target: null })).toThrow(/migration name/);
    expect(() => createRecordEncoder({ migration: 'm', runId: 0, partitionId: 1, target: null })).toThrow(/positive/);
    expect(() => createRecordEncoder({ migration: 'm', runId: 1, partitionId: 1, target: null })('', [])).toThrow(/key/);
  });

  it.each([
    [null, '{}', 'invalid-record: v'],
    ['1', null, 'empty-value'],
    ['1', '{"v":2,', 'invalid-json'],
    ['1', '[1]', 'invalid-record: record must be a JSON object'],
    ['1', '{"v":3,"run":4,"p":5}', 'invalid-record: v must be 1 or 2'],
    ['1', '{"v":2,"m":"DROP TABLE x;","run":1,"p":1,"k":"1","t":null,"c":[]}', 'invalid-record: m must be a migration name'],
    ['1', '{"v":2,"m":"m","run":-1,"p":1,"k":"1","t":null,"c":[]}', 'invalid-record: run'],
    ['1', '{"v":2,"m":"m","run":1,"p":1.5,"k":"1","t":null,"c":[]}', 'invalid-record: p'],
    ['1', '{"v":2,"m":"m","run":1,"p":1,"k":1,"t":null,"c":[]}', 'invalid-record: k'],
    ['1', '{"v":2,"m":"m","run":1,"p":1,"k":"1","t":2,"c":[]}', 'invalid-record: t'],
    ['1', '{"v":2,"m":"m","run":1,"p":1,"k":"1","t":null,"c":[1]}', 'invalid-record: c'],
    ['1', '{"v":2,"m":"m","run":1,"p":1,"k":"1","t":null,"c":[],"x":1}', 'invalid-record: x is not a field'],
    ['2', '{"v":2,"m":"m","run":1,"p":1,"k":"1","t":null,"c":[]}', 'key-mismatch'],
  ])('rejects key %j value %j: %s, naming the run it claims', (key, value, reason) => {
    const { rejected } = decode(key, value);
    expect(rejected?.reason.startsWith(reason), rejected?.reason).toBe(true);
    if (value?.includes('"run":1')) expect(rejected?.runId).toBe(1);
  });

  it('a key longer than 10,000 characters is rejected', () => {
    const key = 'k'.repeat(10_001);
    const { rejected } = decode(key, JSON.stringify({ v: 2, m: 'm', run: 1, p: 1, k: key, t: null, c: [] }));
    expect(rejected?.reason).toMatch(/k must be a string of 1 to 10000/);
  });
});

describe('update record, version 1 (produced before definitions)', () => {
  const v1 = { v: 1, runId: 3, partitionId: 4, id: 55, productKey: 'gold', fromVersion: 1, toVersion: 2 };

  it('is read as run, partition, key, target and the version it came from', () => {
    const { rejected, out } = decode('55', JSON.stringify(v1));
    expect(rejected).toBeNull();
    expect(out).toEqual({ migration: null, runId: 3, partitionId: 4, key: '55', target: '2', carried: ['1'] });
  });

  it.each([
    [{ ...v1, toVersion: 1 }, '55', 'invalid-record: toVersion'],
    [{ ...v1, id: 0 }, '0', 'invalid-record: id'],
    [v1, '56', 'key-mismatch'],
  ])('rejects %j with key %s', (record, key, reason) => {
    expect(decode(key, JSON.stringify(record)).rejected?.reason).toMatch(new RegExp(`^${reason}`));
  });
});

describe('the byte-level fast path', () => {
  it('gives the verdict and fields JSON.parse gives, for encoder output and for thousands of mutations of it', () => {
    const rnd = prng(7);
    const keys = ['1', '42', 'acct \'7 "x"', 'Ünï\u2028', '\ud800', 'k'.repeat(10_000), 'k'.repeat(10_001)];
    const samples: [string, string][] = [];
    for (const key of keys) {
      for (const target of [null, '2', 'v"2', '']) {
        for (const carried of [[], ['1'], [null, 'a\\b', 'ü']]) {
          const value = createRecordEncoderSafe(target, key, carried);
          if (value) samples.push([key, value]);
        }
      }
    }
    const alphabet = ['"', '\\', ',', ']', '}', '0', '9', 'n', 'ü', ' ', '-', '{'];
    for (const [key, value] of samples.slice()) {
      for (let m = 0; m < 60; m++) {
        const at = Math.floor(rnd() * value.length);
        const pick = alphabet[Math.floor(rnd() * alphabet.length)]!;
        const mutated = rnd() < 0.5 ? value.slice(0, at) + pick + value.slice(at + 1) : value.slice(0, at) + value.slice(at + 1);
        samples.push([rnd() < 0.1 ? `${key}x` : key, mutated]);
      }
    }
    for (const [key, value] of samples) {
      const fast = fresh();
      const slow = fresh();
      const a = decodeUpdateRecord(Buffer.from(key), Buffer.from(value), fast);
      const b = decodeText(Buffer.from(key), Buffer.from(value), slow);
      expect({ verdict: a, fields: a ? null : fast }, value.slice(0, 200)).toEqual({ verdict: b, fields: b ? null : slow });
    }
    expect(samples.length).toBeGreaterThan(4000);
  });
});

function createRecordEncoderSafe(target: string | null, key: string, carried: (string | null)[]): string | null {
  try {
    return createRecordEncoder({ migration: 'subscription-version', runId: 12, partitionId: 345, target })(key, carried);
  } catch {
    return null;
  }
}
