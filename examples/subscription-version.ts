/**
 * The reference migration: when a product gets a new `product_version`, every subscription
 * of that product moves to it. The demo (`npm run demo`) and the benchmarks run it on the
 * fixture `tranche seed` generates; docs/definitions.md walks through it line by line.
 */
import { defineMigration } from 'tranche';

export default defineMigration({
  name: 'subscription-version',
  table: 'subscriptions',
  key: 'id',
  partitionBy: 'created_date',
  // Work per product; a product's target is its current version.
  group: { column: 'product_key', targets: { table: 'products', key: 'product_key', target: 'product_version' } },
  eligible: 'product_version < {target}',
  // The version the row had: the record says where it came from.
  carry: ['product_version'],
  set: { product_version: '{target}', updated_at: 'now()' },
  // A replayed or late record changes nothing once the row reached its target.
  guard: 'product_version < {target}',
  // `tranche verify`: a row at the target is done; one past it was moved by someone else. The
  // checksum covers the version only: the index holds it (updated_at it does not), so verify
  // reads the index alone.
  verify: { reached: 'product_version = {target}', beyond: 'product_version > {target}', checksum: ['product_version'] },
  // `tranche undo RUN`: back to the version the row came from, only while it still holds the target.
  undo: { set: { product_version: '{carried.product_version}', updated_at: 'now()' }, guard: 'product_version = {target}' },
});
