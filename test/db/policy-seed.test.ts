import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import {
  activePolicy,
  canonicalJson,
  PolicySeedError,
  seedPolicy,
  type SeedResult,
} from '../../src/db/policy.ts';
import { freshDatabase } from '../support/database.ts';
import { connectAsEach } from '../support/role-boundaries.ts';
import { rolledBack, rolledBackOn } from '../support/transactions.ts';

// Most proofs run in a rolled-back transaction (seedPolicy issues plain statements, so it
// runs inside one); the concurrency proof commits, in a database of its own.
const db = await freshDatabase();
const raceDb = await freshDatabase();
const as = await connectAsEach(db, ['symphony_control', 'symphony_executor']);

const dir = await mkdtemp(path.join(os.tmpdir(), 'symphony-policy-'));
afterAll(() => rm(dir, { recursive: true, force: true }));
let fileCounter = 0;

async function policyFile(content: string): Promise<string> {
  fileCounter += 1;
  const file = path.join(dir, `policy-${fileCounter}.json`);
  await writeFile(file, content);
  return file;
}

const POLICY = {
  version: '2025-06',
  limits: { perItem: 1000, currency: ['ZMW', 'USD'] },
  owner: 'ops',
};
const EXPECTED_CHECKSUM = createHash('sha256')
  .update('{"limits":{"currency":["ZMW","USD"],"perItem":1000},"owner":"ops","version":"2025-06"}')
  .digest('hex');

async function expectRefused(
  seeding: Promise<SeedResult>,
  message: RegExp,
): Promise<PolicySeedError> {
  const error = await seeding.then(
    () => null,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(PolicySeedError);
  expect((error as Error).message).toMatch(message);
  return error as PolicySeedError;
}

async function rows(client: pg.ClientBase) {
  const result = await client.query(
    'SELECT version, status, checksum, updated_at FROM public.policy_versions',
  );
  return result.rows;
}

describe('canonicalJson', () => {
  it('sorts object keys at every depth, keeps array order and drops whitespace', () => {
    expect(canonicalJson({ b: [3, { z: 1, a: null }], a: 'x', c: { y: true, x: 1.5 } })).toBe(
      '{"a":"x","b":[3,{"a":null,"z":1}],"c":{"x":1.5,"y":true}}',
    );
    expect(canonicalJson(JSON.parse('{ "z" : 1 ,\n "a" : "é" }'))).toBe('{"a":"é","z":1}');
  });

  it('refuses values JSON cannot represent', () => {
    for (const value of [
      undefined,
      Number.NaN,
      Infinity,
      () => 1,
      10n,
      new Date(0),
      { nested: undefined },
    ]) {
      expect(() => canonicalJson(value)).toThrow(TypeError);
    }
  });
});

describe('seedPolicy', () => {
  it('activePolicy is null before any policy is seeded', async () => {
    expect(await activePolicy(db.owner)).toBeNull();
  });

  it('INV-POL-SEED-FAIL-CLOSED: seeding an empty database inserts the policy ACTIVE with the sha256 of its canonical JSON', async () => {
    const file = await policyFile(JSON.stringify(POLICY, null, 2));
    await rolledBackOn(db.owner, async (client) => {
      expect(await seedPolicy(client, { file })).toEqual({
        outcome: 'seeded',
        version: '2025-06',
        checksum: EXPECTED_CHECKSUM,
      });
      expect(await activePolicy(client)).toEqual({
        version: '2025-06',
        checksum: EXPECTED_CHECKSUM,
      });
    });
  });

  it('INV-POL-SEED-FAIL-CLOSED: seeding the same version and content again, however formatted, changes nothing', async () => {
    const file = await policyFile(JSON.stringify(POLICY));
    const reformatted = await policyFile(
      '{"owner":"ops",\n  "limits": {"currency": ["ZMW","USD"], "perItem": 1000}, "version": "2025-06"}',
    );
    await rolledBackOn(db.owner, async (client) => {
      await seedPolicy(client, { file });
      const before = await rows(client);
      expect(await seedPolicy(client, { file: reformatted })).toMatchObject({
        outcome: 'already-seeded',
      });
      expect(await rows(client)).toEqual(before);
    });
  });

  it('INV-POL-SEED-FAIL-CLOSED: seeding refuses and changes nothing when another version is ACTIVE', async () => {
    const file = await policyFile(JSON.stringify(POLICY));
    const next = await policyFile(JSON.stringify({ ...POLICY, version: '2025-07' }));
    await rolledBackOn(db.owner, async (client) => {
      await seedPolicy(client, { file });
      const before = await rows(client);
      await expectRefused(
        seedPolicy(client, { file: next }),
        /policy 2025-06 is already ACTIVE.*never replaces/,
      );
      expect(await rows(client)).toEqual(before);
    });
  });

  it('INV-POL-SEED-FAIL-CLOSED: seeding refuses and changes nothing when the ACTIVE version has other content', async () => {
    const file = await policyFile(JSON.stringify(POLICY));
    const edited = await policyFile(JSON.stringify({ ...POLICY, owner: 'someone else' }));
    await rolledBackOn(db.owner, async (client) => {
      await seedPolicy(client, { file });
      const before = await rows(client);
      await expectRefused(
        seedPolicy(client, { file: edited }),
        /never changes; give the changed policy a new version/,
      );
      expect(await rows(client)).toEqual(before);
    });
  });

  it('INV-POL-SEED-FAIL-CLOSED: seeding refuses a version that already exists but is no longer ACTIVE', async () => {
    const file = await policyFile(JSON.stringify(POLICY));
    await rolledBackOn(db.owner, async (client) => {
      await client.query(
        "INSERT INTO public.policy_versions (version, status, checksum) VALUES ('2025-06', 'RETIRED', $1)",
        [EXPECTED_CHECKSUM],
      );
      await expectRefused(
        seedPolicy(client, { file }),
        /2025-06 already exists with status RETIRED/,
      );
      expect(await activePolicy(client)).toBeNull();
    });
  });

  it('INV-POL-SEED-FAIL-CLOSED: an unreadable file, invalid JSON, a non-object or a missing version fail closed', async () => {
    const cases: Array<[string, RegExp]> = [
      [path.join(dir, 'missing.json'), /cannot read policy file .*missing\.json/],
      [await policyFile('{"version": "1",'), /is not valid JSON/],
      [await policyFile('["version", "1"]'), /must contain a JSON object/],
      [await policyFile('{"name": "no version"}'), /no usable "version"/],
      [await policyFile('{"version": 7}'), /no usable "version"/],
      [await policyFile('{"version": "  "}'), /no usable "version"/],
    ];
    await rolledBackOn(db.owner, async (client) => {
      for (const [file, message] of cases)
        await expectRefused(seedPolicy(client, { file }), message);
      expect(await rows(client)).toEqual([]);
    });
  });

  it('INV-POL-SEED-FAIL-CLOSED: six concurrent seeders of one file leave exactly one ACTIVE policy', async () => {
    const file = await policyFile(JSON.stringify(POLICY));
    const clients = await Promise.all(Array.from({ length: 6 }, () => raceDb.connect()));
    try {
      const results = await Promise.all(clients.map((client) => seedPolicy(client, { file })));
      expect(results.map((result) => result.outcome).sort()).toEqual([
        'already-seeded',
        'already-seeded',
        'already-seeded',
        'already-seeded',
        'already-seeded',
        'seeded',
      ]);
    } finally {
      await Promise.all(clients.map((client) => client.end()));
    }
    const { rows: stored } = await raceDb.owner.query(
      'SELECT version, status, checksum FROM public.policy_versions',
    );
    expect(stored).toEqual([{ version: '2025-06', status: 'ACTIVE', checksum: EXPECTED_CHECKSUM }]);
  });

  it('the development policy used by npm start seeds cleanly', async () => {
    const file = fileURLToPath(new URL('../../policy/development.json', import.meta.url));
    await rolledBackOn(db.owner, async (client) => {
      expect(await seedPolicy(client, { file })).toMatchObject({
        outcome: 'seeded',
        version: 'development-1',
      });
    });
  });

  it('INV-POL-GRANTS: a member of symphony_control can seed; a member of symphony_executor is refused with 42501', async () => {
    const file = await policyFile(JSON.stringify(POLICY));
    await rolledBack(as.symphony_control, async (client) => {
      expect(await seedPolicy(client, { file })).toMatchObject({ outcome: 'seeded' });
    });
    await rolledBack(as.symphony_executor, async (client) => {
      const error = await expectRefused(seedPolicy(client, { file }), /SQLSTATE 42501/);
      expect((error.cause as { code?: string }).code).toBe('42501');
    });
  });
});
