/**
 * The global throttle on its own, against the real Redis: one bucket shared by every
 * instance, a limit that changes while throttles wait, and fail-open when Redis is down.
 * (tasks.test.ts checks it end to end through a run.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCoordination } from '../../src/coordination/redis.ts';
import { createThrottle, getThrottleLimit, setThrottleLimit } from '../../src/coordination/throttle.ts';
import { createTestEnv, quietLog, type TestEnv } from '../support/env.ts';

describe('the global throttle (Redis)', () => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await createTestEnv();
  });
  afterAll(async () => {
    await env.cleanup();
  });

  it('shares one limit between instances, follows changes at once, and lets everything through when Redis is down', async () => {
    const co = createCoordination({ redisUrl: env.config.redisUrl, prefix: env.config.redisPrefix }, quietLog);
    const down = createCoordination({ redisUrl: 'redis://127.0.0.1:1', prefix: env.config.redisPrefix }, quietLog);
    try {
      // Two instances' throttles, one bucket: 200 rows/s, one second of burst.
      const a = createThrottle({ redis: co.client, prefix: env.config.redisPrefix, defaultLimit: 0, log: quietLog });
      const b = createThrottle({ redis: co.client, prefix: env.config.redisPrefix, defaultLimit: 0, log: quietLog });
      await setThrottleLimit(co.client, env.config.redisPrefix, 200);
      expect(await getThrottleLimit(co.client, env.config.redisPrefix)).toBe(200);
      const started = performance.now();
      await a.acquire(200); // the burst
      await b.acquire(100); // must wait for ~0.5 s of refill
      await a.acquire(100); // and another ~0.5 s
      expect(performance.now() - started).toBeGreaterThanOrEqual(900);
      // Lifted while waiting: a throttle asking for rows the bucket does not hold goes on at once.
      const waiting = b.acquire(200);
      await setThrottleLimit(co.client, env.config.redisPrefix, 0);
      const lifted = performance.now();
      await waiting;
      expect(performance.now() - lifted).toBeLessThan(500);
      // Back to the configured default (here: unlimited).
      await setThrottleLimit(co.client, env.config.redisPrefix, null);
      expect(await getThrottleLimit(co.client, env.config.redisPrefix)).toBeNull();
      // Redis down: fail open.
      const blind = createThrottle({ redis: down.client, prefix: env.config.redisPrefix, defaultLimit: 1, log: quietLog });
      const t = performance.now();
      expect(await blind.acquire(1_000_000)).toBe(true);
      expect(performance.now() - t).toBeLessThan(1000);
    } finally {
      await co.client.del(`${env.config.redisPrefix}:throttle`, `${env.config.redisPrefix}:throttle:limit`);
      await co.close();
      await down.close();
    }
  });
});
