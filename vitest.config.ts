import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    reporters: ['default', './test/support/summary-reporter.ts'],
    globalSetup: ['./test/support/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    projects: [
      {
        extends: true,
        test: {
          name: 'suite',
          include: ['test/unit/**/*.test.ts', 'test/integration/**/*.test.ts'],
          // Each integration file isolates itself (own schema, Redis prefix, topics, consumer
          // group), so files run in parallel.
          pool: 'forks',
          maxWorkers: 2,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: 'chaos',
          include: ['test/chaos/**/*.test.ts'],
          // Restarts shared services: alone, after everything else.
          pool: 'forks',
          maxWorkers: 1,
          testTimeout: 400_000,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
