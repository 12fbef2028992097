import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests talk to real Postgres, Redis and Kafka; each file isolates itself
    // (own schema, Redis prefix, topics, consumer group), so files may run in parallel.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: ['default', './test/support/summary-reporter.ts'],
    outputFile: {},
  },
});
