/**
 * Issue 23: the network between the instances and the Kafka broker is cut for 45 s in the
 * middle of a run with two instances, then restored. The broker keeps running meanwhile (unlike
 * a frozen one it drops the silent members at once); the update consumers must come back by
 * themselves and the run complete: nothing left, no row applied twice with effect, one
 * completion event.
 *
 * The cut is a TCP proxy that stops forwarding (test/support/tcp-proxy.ts), which the private
 * broker advertises as its address: iptables is not installed on the test machines, and a
 * proxy needs no privileges.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Service } from '../../src/service.ts';
import { type TestEnv, waitFor } from '../support/env.ts';
import { counter, expectCompleted, readyz, SESSION_TIMEOUT_MS, startFaultRun } from '../support/fault-run.ts';
import { type PrivateKafka, startPrivateKafka } from '../support/private-kafka.ts';
import { stopAll } from '../support/services.ts';

const CUT_MS = 45_000;

describe('the update consumers come back after the network to the broker was cut', () => {
  let broker: PrivateKafka;
  let env: TestEnv | undefined;
  let services: Service[] = [];
  beforeAll(async () => {
    broker = await startPrivateKafka({ proxied: true });
  });
  afterAll(async () => {
    await stopAll(services);
    await env?.cleanup();
    await broker?.destroy();
  });

  it('network cut for 45 s, then restored: not ready while out of the group, then the run completes', async () => {
    let runId: number;
    ({ env, services, runId } = await startFaultRun(broker));
    const network = broker.network!;
    const cutAt = Date.now();
    network.cut();
    try {
      // Silent for longer than a session: both consumers count as out of their group.
      await waitFor(async () => (await Promise.all(services.map(readyz))).every((r) => r.status === 503 && !r.kafka), 3 * SESSION_TIMEOUT_MS, 'both instances not ready');
      await new Promise((r) => setTimeout(r, Math.max(0, CUT_MS - (Date.now() - cutAt))));
    } finally {
      network.restore();
    }
    await expectCompleted(broker, env, services, runId);
    const restarts = await Promise.all(services.map((s) => counter(s, 'tranche_kafka_consumer_restarts_total')));
    expect(restarts.reduce((a, b) => a + b, 0), 'a consumer crashed and was replaced').toBeGreaterThanOrEqual(1);
  }, 200_000);
});
