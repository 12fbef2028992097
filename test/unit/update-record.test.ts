import { describe, expect, it } from 'vitest';
import { latestPerRow } from '../../src/consumer/update-consumer.ts';
import { createRecordEncoder, decodeUpdateRecord, encodeUpdateRecord, type UpdateRecord } from '../../src/stream/update-record.ts';

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

  it('keeps one record per row, the highest target', () => {
    const kept = latestPerRow([
      { offset: '1', record: { ...record, id: 7, toVersion: 3 } },
      { offset: '2', record: { ...record, id: 7, toVersion: 2 } },
      { offset: '3', record: { ...record, id: 8, toVersion: 2 } },
    ]);
    expect(kept.map((k) => [k.record.id, k.record.toVersion]).sort()).toEqual([
      [7, 3],
      [8, 2],
    ]);
  });
});
