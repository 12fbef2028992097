/**
 * Identifiers that need quoting: a text key named "Account Code", a timestamp partition
 * column named "Signed Up", a group column named "Region" whose target comes from
 * "Region Policies"."Policy Version". Used by the tests (test/support/fixtures.ts).
 */
import { defineMigration } from 'tranche';

export default defineMigration({
  name: 'account-policy',
  table: 'Accounts',
  key: 'Account Code',
  partitionBy: 'Signed Up',
  group: { column: 'Region', targets: { table: 'Region Policies', key: 'Region', target: 'Policy Version' } },
  eligible: '"Policy Version" < {target}',
  carry: ['Policy Version'],
  set: { 'Policy Version': '{target}', 'Previous Version': '{carried.Policy Version}' },
  schedule: null,
});
