/**
 * What a migration definition file imports: `import { defineMigration } from 'tranche'`.
 */
export { defineMigration, type MigrationDefinition } from './definitions/define.ts';
