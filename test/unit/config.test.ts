import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { ConfigError } from '../../src/errors.ts';

describe('loadConfig', () => {
  it('applies documented defaults', () => {
    const c = loadConfig({});
    expect(c.kafkaBrokers).toEqual(['127.0.0.1:9092']);
    expect(c.topicUpdates).toBe('tranche.updates');
    expect(c.topicDeadLetters).toBe('tranche.dead-letters');
    expect(c.topicRunEvents).toBe('tranche.run-events');
    expect(c.httpPort).toBe(8080);
    expect(c.partitionSize).toBe(10_000);
    expect(c.consumerFetchMaxBytes).toBe(3 * 1024 * 1024);
    expect(c.kafkaSessionTimeoutMs).toBe(10_000);
    expect(c.consumerDownAlertMs).toBe(60_000);
    expect(c.runStallAfterMs).toBe(60_000);
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('leaves ADMIN_TOKEN unset (read-only dashboard) unless given, and refuses a short or spaced one', () => {
    expect(loadConfig({}).adminToken).toBeNull();
    expect(loadConfig({ ADMIN_TOKEN: '' }).adminToken).toBeNull();
    expect(loadConfig({ ADMIN_TOKEN: 'a-long-enough-token' }).adminToken).toBe('a-long-enough-token');
    expect(() => loadConfig({ ADMIN_TOKEN: 'short' })).toThrow(/ADMIN_TOKEN/);
    expect(() => loadConfig({ ADMIN_TOKEN: 'has a space in it, long' })).toThrow(ConfigError);
  });

  it('prefers flags over the environment over defaults', () => {
    expect(loadConfig({ PARTITION_SIZE: '500' }).partitionSize).toBe(500);
    expect(loadConfig({ PARTITION_SIZE: '500' }, { PARTITION_SIZE: 42 }).partitionSize).toBe(42);
  });

  it.each([
    ['PARTITION_SIZE', '0'],
    ['PARTITION_SIZE', 'ten'],
    ['PAGE_SIZE', '-5'],
    ['DATABASE_URL', 'not a url'],
    ['DATABASE_URL', 'mysql://x/y'],
    ['REDIS_URL', 'http://x'],
    ['KAFKA_BROKERS', 'localhost'],
    ['CRON_SCHEDULE', '99 * * * *'],
    ['CRON_SCHEDULE', '* * *'],
    ['CRON_TIMEZONE', 'Mars/Olympus'],
    ['CRON_MISSED', 'sometimes'],
    ['DB_SCHEMA', 'Robert"); DROP TABLE x'],
    ['TOPIC_UPDATES', 'bad topic'],
    ['LOG_LEVEL', 'loud'],
    ['CRON_ENABLED', 'maybe'],
    ['CONSUMER_FETCH_MAX_BYTES', '1024'],
    ['HEALTH_MAX_REPLICA_LAG_MS', '-1'],
    ['HEALTH_MAX_LOCK_WAIT_MS', '-100'],
    ['HEALTH_MAX_ACTIVE_BACKENDS', '0'],
    ['HEALTH_PROBE_QUERY', 'DELETE FROM subscriptions'],
    ['HEALTH_PROBE_QUERY', 'SELECT 1; DROP TABLE x'],
    ['HEALTH_CRITICAL_FACTOR', '0.5'],
    ['WINDOW_TIMEZONE', 'Mars/Olympus'],
    ['WINDOW', '05:00-01:00'],
    ['PAGE_TARGET_MS', '-500'],
    ['PAGE_TARGET_MS', 'off'],
    ['PAGE_SIZE_ADAPTIVE', 'sometimes'],
    ['PAGE_SIZE_MAX', '0'],
    ['KAFKA_SESSION_TIMEOUT_MS', '10'],
    ['CONSUMER_DOWN_ALERT_MS', 'soon'],
    ['RUN_STALL_AFTER_MS', '0'],
  ])('rejects %s=%s with a message naming the variable', (name, value) => {
    let error: unknown;
    try {
      loadConfig({ [name]: value });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).variable).toBe(name);
    expect((error as Error).message).toContain(name);
  });

  it('accepts a six-field (seconds) cron expression and an IANA zone', () => {
    const c = loadConfig({ CRON_SCHEDULE: '*/5 * * * * *', CRON_TIMEZONE: 'Europe/Berlin' });
    expect(c.cronSchedule).toBe('*/5 * * * * *');
    expect(c.cronTimezone).toBe('Europe/Berlin');
  });

  it('documents the protection defaults and turns signals off with "off"', () => {
    const c = loadConfig({});
    expect(c.healthMaxReplicaLagMs).toBe(1000);
    expect(c.healthMaxLockWaitMs).toBe(100);
    expect(c.healthMaxActiveBackends).toBeNull();
    expect(c.healthProbeQuery).toBeNull();
    expect(c.healthCriticalFactor).toBeNull();
    expect(c.pageSizeAdaptive).toBe(false);
    expect(c.pageTargetMs).toBe(50);
    expect(c.window).toBeNull();
    const off = loadConfig({ HEALTH_MAX_REPLICA_LAG_MS: 'off', PAGE_SIZE_ADAPTIVE: 'on', WINDOW: '01:00-05:00', WINDOW_TIMEZONE: 'Europe/Paris' });
    expect(off.healthMaxReplicaLagMs).toBeNull();
    expect(off.pageSizeAdaptive).toBe(true);
    expect(off.window?.timezone).toBe('Europe/Paris');
    expect(loadConfig({ HEALTH_PROBE_QUERY: 'select count(*) from pg_stat_activity' }).healthProbeQuery).toMatch(/^select/);
  });

  it('requires the heartbeat timeout to exceed two heartbeat intervals', () => {
    expect(() => loadConfig({ HEARTBEAT_INTERVAL_MS: '1000', HEARTBEAT_TIMEOUT_MS: '1500' })).toThrow(/HEARTBEAT_TIMEOUT_MS/);
  });
});
