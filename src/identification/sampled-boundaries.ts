/**
 * Sampled partition boundaries: the same exact cover as the index walk, from ONE page sample
 * of the table (TABLESAMPLE SYSTEM) for all products at once plus one backward index probe
 * per boundary, so the cost no longer grows with the number of eligible rows. Bounds are real
 * rows and consecutive partitions touch, so I1 holds whatever the sample; only the sizes are
 * approximate, and `rowCount` is an estimate (sampled rows / sampled fraction).
 *
 * Experimental: identification does not use it, because partition row counts are exact
 * everywhere else (progress, the outstanding counter) and because the size tolerance holds
 * only when a product's rows are spread over the table's pages; see docs/identification.md.
 *
 * @example
 *   const bounds = await computeSampledBoundaries(pool, [{ productKey: 'product-001', targetVersion: 2 }],
 *     100_000, 1000, samplePercentFor(100_000));
 */
import type { Queryable } from '../db.ts';
import { loadSql } from '../sql.ts';
import { type PartitionBounds, toBounds } from './identify.ts';

export interface SampledPartitionBounds extends PartitionBounds {
  productKey: string;
  /** Rows of the sample inside the partition; `rowCount` is this divided by the fraction. */
  sampled: number;
}

/**
 * The page-sample percentage that puts about `samplesPerPartition` sampled rows in each
 * partition. When rows are spread over pages independently, a partition's relative size
 * error is about 1/sqrt(samples): 1,600 samples make ±10% a 4-sigma event.
 */
export function samplePercentFor(partitionSize: number, samplesPerPartition = 1600): number {
  return Math.min(100, (100 * samplesPerPartition) / partitionSize);
}

export async function computeSampledBoundaries(
  db: Queryable,
  products: readonly { productKey: string; targetVersion: number }[],
  partitionSize: number,
  maxPartitions: number,
  samplePercent: number,
): Promise<SampledPartitionBounds[]> {
  if (!(samplePercent > 0 && samplePercent <= 100)) throw new RangeError(`sample percent must be in (0, 100] (got ${samplePercent})`);
  const { rows } = await db.query(loadSql('partition-boundaries-sampled'), [
    products.map((p) => p.productKey),
    products.map((p) => p.targetVersion),
    partitionSize,
    maxPartitions,
    samplePercent,
  ]);
  return rows.map(
    (r): SampledPartitionBounds => ({ ...toBounds(r), productKey: r.product_key, sampled: r.sampled }),
  );
}
