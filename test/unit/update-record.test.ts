import { describe, expect, it, vi } from 'vitest';
import { integerArray, latestPerRow } from '../../src/consumer/update-consumer.ts';
import {
  createRecordEncoder,
  decodeUpdateRecord,
  decodeUpdateRecordBytes,
  encodeUpdateRecord,
  type RecordFields,
  type UpdateRecord,
} from '../../src/stream/update-record.ts';

const record: UpdateRecord = { v: 1, runId: 1, partitionId: 2, id: 3, productKey: `it's "ünïcode"`, fromVersion: 1, toVersion: 2 };

describe('update record', () => {
  it('round-trips', () => {
    expect(decodeUpdateRecord('3', encodeUpdateRecord(record))).toEqual({ ok: true, record });
  });

  it.each([
    ['empty value', '3', null, 'empty-value'],
    ['not JSON', '3', '{nope', 'invalid-json'],
    ['wrong schema version', '3', JSON.stringify({ ...record, v: 2 }), 'invalid-record'],
    ['missing field', '3', JSON.stringify({ ...record, id: undefined }), 'invalid-record'],
    ['unknown field', '3', JSON.stringify({ ...record, extra: 1 }), 'invalid-record'],
    ['negative id', '-3', JSON.stringify({ ...record, id: -3 }), 'invalid-record'],
    ['target not above source', '3', JSON.stringify({ ...record, toVersion: 1 }), 'invalid-record'],
    ['key is not the row id', '4', JSON.stringify(record), 'key-mismatch'],
    ['an array', '3', JSON.stringify([record]), 'invalid-record'],
    ['a fractional id', '3.5', JSON.stringify({ ...record, id: 3.5 }), 'invalid-record'],
    ['an id beyond safe integers', '9007199254740993', JSON.stringify({ ...record, id: 2 ** 53 + 2 }), 'invalid-record'],
    ['an id as a string', '3', JSON.stringify({ ...record, id: '3' }), 'invalid-record'],
    ['an empty product key', '3', JSON.stringify({ ...record, productKey: '' }), 'invalid-record'],
    ['an over-long product key', '3', JSON.stringify({ ...record, productKey: 'x'.repeat(10_001) }), 'invalid-record'],
    ['a version beyond int4', '3', JSON.stringify({ ...record, toVersion: 2 ** 31 }), 'invalid-record'],
    ['a negative source version', '3', JSON.stringify({ ...record, fromVersion: -1 }), 'invalid-record'],
    ['a null record', '3', 'null', 'invalid-record'],
  ])('rejects %s', (_name, key, value, reason) => {
    const result = decodeUpdateRecord(key, value);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason.startsWith(reason)).toBe(true);
  });

  it('names the run and partition a rejected record claims, when it names them as ids', () => {
    expect(decodeUpdateRecord('3', JSON.stringify({ ...record, v: 2 }))).toMatchObject({ ok: false, runId: 1, partitionId: 2 });
    expect(decodeUpdateRecord('4', JSON.stringify(record))).toMatchObject({ ok: false, runId: 1, partitionId: 2 });
    expect(decodeUpdateRecord('3', JSON.stringify({ ...record, runId: 'x', partitionId: -1 }))).toMatchObject({ ok: false, runId: null, partitionId: null });
    expect(decodeUpdateRecord('3', '[1]')).toMatchObject({ ok: false, runId: null, partitionId: null });
    expect(decodeUpdateRecord('3', '{nope')).toMatchObject({ ok: false, runId: null, partitionId: null });
  });

  it('refuses to encode an invalid record', () => {
    expect(() => encodeUpdateRecord({ ...record, toVersion: 0 })).toThrow();
  });

  it('the per-partition encoder writes what encodeUpdateRecord writes', () => {
    for (const productKey of ['gold', `it's "ünïcode" \\ \n`, 'x'.repeat(10_000), '😀\u2028']) {
      const shared = { runId: 12, partitionId: 345, productKey, toVersion: 2_147_483_647 };
      const encode = createRecordEncoder(shared);
      for (const [id, fromVersion] of [
        [1, 0],
        [Number.MAX_SAFE_INTEGER, 2_147_483_646],
        [987_654_321, 7],
      ] as const) {
        const { runId, partitionId, toVersion } = shared;
        expect(encode({ id, fromVersion })).toBe(encodeUpdateRecord({ v: 1, runId, partitionId, id, productKey, fromVersion, toVersion }));
      }
    }
  });

  it('the per-partition encoder refuses what encodeUpdateRecord refuses', () => {
    expect(() => createRecordEncoder({ runId: 1, partitionId: 2, productKey: '', toVersion: 2 })).toThrow(/productKey/);
    expect(() => createRecordEncoder({ runId: 0, partitionId: 2, productKey: 'p', toVersion: 2 })).toThrow(/runId/);
    const encode = createRecordEncoder({ runId: 1, partitionId: 2, productKey: 'p', toVersion: 2 });
    expect(() => encode({ id: 0, fromVersion: 1 })).toThrow(/id must be/);
    expect(() => encode({ id: 2 ** 53, fromVersion: 1 })).toThrow(/id must be/);
    expect(() => encode({ id: 5, fromVersion: 2 })).toThrow(/toVersion must be above/);
    expect(() => encode({ id: 5, fromVersion: -1 })).toThrow(/fromVersion/);
    expect(() => encode({ id: 5, fromVersion: 1.5 })).toThrow(/fromVersion/);
  });

  it('keeps one record per row, the highest target (ties: the latest), in row id order', () => {
    const ids = Float64Array.from([9, 7, 7, 8, 9, 3, 9]);
    const toVersions = Int32Array.from([2, 3, 2, 2, 4, 5, 4]);
    const kept = latestPerRow([0, 1, 2, 3, 4, 5, 6], { ids, toVersions });
    expect(kept).toEqual([5, 1, 3, 6]);
    expect(latestPerRow([], { ids, toVersions })).toEqual([]);
    // only the indexes given count
    expect(latestPerRow([0, 2], { ids, toVersions })).toEqual([2, 0]);
  });

  it('builds Postgres integer array literals from columns', () => {
    expect(integerArray(Float64Array.from([5, 9_007_199_254_740_991, 1]), [2, 0, 1])).toBe('{1,5,9007199254740991}');
    expect(integerArray(Int32Array.from([1]), [])).toBe('{}');
  });
});

describe('update record from bytes', () => {
  /** Both decoders on one input: the verdict from bytes must be the verdict from text. */
  function compare(key: string | null, value: string | null): boolean {
    const out: RecordFields = { runId: -1, partitionId: -1, id: -1, fromVersion: -1, toVersion: -1 };
    const fromBytes = decodeUpdateRecordBytes(key === null ? null : Buffer.from(key), value === null ? null : Buffer.from(value), out);
    const fromText = decodeUpdateRecord(key, value);
    if (fromText.ok) {
      expect(fromBytes, `${key} ${value}`).toBeNull();
      const { runId, partitionId, id, fromVersion, toVersion } = fromText.record;
      expect(out).toEqual({ runId, partitionId, id, fromVersion, toVersion });
    } else {
      expect(fromBytes, `${key} ${value}`).toEqual(fromText);
    }
    return fromText.ok;
  }

  it('reads what the encoder writes on the bytes, without parsing JSON', () => {
    const inputs: [string, string][] = [];
    for (const productKey of ['gold', 'x'.repeat(10_000), ' ~!#$%&()*+,-./:;<=>?@[]^_`{|}', 'ünïcode 😀\u007f']) {
      const encode = createRecordEncoder({ runId: 12, partitionId: 345, productKey, toVersion: 2_147_483_647 });
      for (const [id, fromVersion] of [
        [1, 0],
        [999_999_999_999_999, 2_147_483_646],
        [987_654_321, 7],
      ] as const) {
        inputs.push([String(id), encode({ id, fromVersion })]);
      }
    }
    for (const [key, value] of inputs) expect(compare(key, value)).toBe(true);
    const parse = vi.spyOn(JSON, 'parse');
    try {
      const out: RecordFields = { runId: 0, partitionId: 0, id: 0, fromVersion: 0, toVersion: 0 };
      for (const [key, value] of inputs) expect(decodeUpdateRecordBytes(Buffer.from(key), Buffer.from(value), out)).toBeNull();
      expect(parse).not.toHaveBeenCalled();
    } finally {
      parse.mockRestore();
    }
  });

  it.each([
    ['a product key with escapes', { productKey: 'it\'s "q" \\ \n' }],
    ['a non-ASCII product key', { productKey: 'ünïcode 😀' }],
    ['an id of 16 digits', { id: 9_007_199_254_740_991 }],
    ['an id beyond safe integers', { id: 2 ** 53 + 2 }],
    ['a zero run id', { runId: 0 }],
    ['a zero source version', { fromVersion: 0 }],
    ['a version beyond int4', { toVersion: 2 ** 31 }],
    ['a target not above the source', { toVersion: 1 }],
    ['an empty product key', { productKey: '' }],
    ['an over-long product key', { productKey: 'x'.repeat(10_001) }],
    ['a fractional id', { id: 3.5 }],
    ['an extra field', { extra: 1 }],
  ])('gives the text decoder\'s verdict on %s', (_name, change) => {
    const r = { ...record, productKey: 'gold', ...change };
    compare(String(r.id), JSON.stringify(r));
  });

  const raw = (productKey: string, tail = '') => `{"v":1,"runId":1,"partitionId":2,"id":3,"productKey":"${productKey}","fromVersion":1,"toVersion":2}${tail}`;
  it.each([
    ['an invalid escape in the product key', raw('p\\p')],
    ['an escaped quote ending the product key', raw('p\\"')],
    ['a raw control character in the product key', raw('p\tq')],
    ['trailing whitespace', raw('p', ' ')],
    ['a leading zero', raw('p').replace('"id":3', '"id":03')],
    ['a leading zero in the run id', raw('p').replace('"runId":1', '"runId":01')],
    ['bytes after the record', raw('p', 'x')],
    ['a negative zero version', raw('p').replace('"fromVersion":1', '"fromVersion":-0')],
    ['an exponent', raw('p').replace('"toVersion":2', '"toVersion":2e0')],
  ])('gives the text decoder\'s verdict on %s', (_name, value) => {
    compare('3', value);
  });

  it('reads invalid UTF-8 in a product key as the text decoder does', () => {
    const [head, tail] = raw('p').split('"productKey":"p');
    const value = Buffer.concat([Buffer.from(`${head}"productKey":"p`), Buffer.from([0xff, 0xc3]), Buffer.from(tail!)]);
    const out: RecordFields = { runId: 0, partitionId: 0, id: 0, fromVersion: 0, toVersion: 0 };
    const fromText = decodeUpdateRecord('3', value.toString('utf8'));
    expect(fromText.ok).toBe(true);
    expect(decodeUpdateRecordBytes(Buffer.from('3'), value, out)).toBeNull();
    expect(out).toEqual({ runId: 1, partitionId: 2, id: 3, fromVersion: 1, toVersion: 2 });
  });

  it('gives the text decoder\'s verdict on 20,000 mutations of valid records', () => {
    let seed = 42;
    const random = (n: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed % n;
    };
    const alphabet = ['0', '1', '9', '"', '\\', ',', ':', '}', '{', ' ', '-', '.', 'e', 'x', '\u00e9', '\n', 'v'];
    let valid = 0;
    for (let i = 0; i < 20_000; i++) {
      const id = 1 + random(10 ** (1 + random(9)));
      const fromVersion = random(5);
      const value = createRecordEncoder({ runId: 1 + random(99), partitionId: 1 + random(999), productKey: `p${random(50)}`, toVersion: fromVersion + 1 + random(3) })({
        id,
        fromVersion,
      });
      let mutated = value;
      const keyAt = value.indexOf('"productKey"') + 14;
      for (let k = random(3); k > 0; k--) {
        // half the mutations land in or next to the product key, the only free text
        const at = random(2) === 0 ? keyAt + random(5) : random(mutated.length + 1);
        const op = random(3);
        const c = alphabet[random(alphabet.length)]!;
        mutated = mutated.slice(0, at) + (op === 2 ? '' : c) + mutated.slice(op === 0 ? at : at + 1);
      }
      const key = random(20) === 0 ? String(id + 1) : random(50) === 0 ? null : String(id);
      if (compare(key, random(100) === 0 ? null : mutated)) valid++;
    }
    // the mutations must leave both kinds of input to compare
    expect(valid).toBeGreaterThan(2_000);
    expect(valid).toBeLessThan(18_000);
  });
});
