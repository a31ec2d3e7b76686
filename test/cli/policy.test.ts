import { beforeEach, describe, expect, it } from 'vitest';
import { policyChecksum } from '../../src/db/policy.ts';
import { runCli, scratchDirectory } from '../support/cli.ts';
import { freshDatabase, type TestDatabase } from '../support/database.ts';

const files = await scratchDirectory('policy');
const POLICY = { version: '2025-06', limits: { perItemZmw: '50000.00' }, rails: ['sandbox'] };
const policyFile = await files.write('policy.json', JSON.stringify(POLICY, null, 2));

interface PolicyRow {
  version: string;
  status: string;
  checksum: string;
}

async function policyRows(db: TestDatabase): Promise<PolicyRow[]> {
  const { rows } = await db.owner.query<PolicyRow>(
    'SELECT version, status, checksum FROM public.policy_versions ORDER BY version',
  );
  return rows;
}

const seedAsOwner = (db: TestDatabase, file: string) =>
  runCli(['policy', 'seed', '--file', file], { DATABASE_URL: db.ownerUrl });

// Every test starts from a database of its own, with no policy, and seeds what it needs:
// the tests pass in any order and alone.
describe('symphony-relay policy seed (as the owner)', () => {
  let db: TestDatabase;
  beforeEach(async () => {
    db = await freshDatabase();
  });
  const checksum = policyChecksum(POLICY);

  it('seeds the ACTIVE policy and prints its version and checksum', async () => {
    const result = await runCli(['policy', 'seed', '--file', policyFile], {
      DATABASE_URL: db.ownerUrl,
    });

    expect(result, result.stderr).toMatchObject({ code: 0 });
    expect(result.stdout.trim()).toBe(`seeded policy 2025-06 as ACTIVE (sha256 ${checksum})`);
    expect(await policyRows(db)).toEqual([{ version: '2025-06', status: 'ACTIVE', checksum }]);
  });

  it('seeding the same file again is a no-op that says so', async () => {
    expect(await seedAsOwner(db, policyFile)).toMatchObject({ code: 0 });
    const reformatted = await files.write('same-policy-reformatted.json', JSON.stringify(POLICY));

    const result = await runCli(['policy', 'seed', '--file', reformatted], {
      DATABASE_URL: db.ownerUrl,
    });

    expect(result, result.stderr).toMatchObject({ code: 0 });
    expect(result.stdout.trim()).toBe(
      `policy 2025-06 is already seeded and ACTIVE (sha256 ${checksum}); nothing changed`,
    );
    expect(await policyRows(db)).toEqual([{ version: '2025-06', status: 'ACTIVE', checksum }]);
  });

  it('changed content under the same version fails closed and changes nothing', async () => {
    expect(await seedAsOwner(db, policyFile)).toMatchObject({ code: 0 });
    const changed = await files.write(
      'changed.json',
      JSON.stringify({ ...POLICY, limits: { perItemZmw: '1.00' } }),
    );

    const result = await runCli(['policy', 'seed', '--file', changed], {
      DATABASE_URL: db.ownerUrl,
    });

    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(`symphony-relay: policy seed: refusing to seed ${changed}`);
    expect(result.stderr).toContain('give the changed policy a new version');
    expect(await policyRows(db)).toEqual([{ version: '2025-06', status: 'ACTIVE', checksum }]);
  });

  it('a file that is not JSON, has no version, or does not exist fails with a message naming it', async () => {
    const notJson = await files.write('broken.json', '{"version": "2025-07",');
    const noVersion = await files.write('no-version.json', JSON.stringify({ limits: {} }));
    const missing = `${files.path}/does-not-exist.json`;

    const results = await Promise.all(
      [notJson, noVersion, missing].map((file) =>
        runCli(['policy', 'seed', '--file', file], { DATABASE_URL: db.ownerUrl }),
      ),
    );

    expect(results.map((result) => result.code)).toEqual([1, 1, 1]);
    expect(results[0]?.stderr).toContain(`policy file ${notJson} is not valid JSON`);
    expect(results[1]?.stderr).toContain(`policy file ${noVersion} has no usable "version"`);
    expect(results[2]?.stderr).toContain(`cannot read policy file ${missing}`);
    expect(await policyRows(db)).toEqual([]);
  });
});

describe('symphony-relay policy seed --acts-as symphony_control', () => {
  let db: TestDatabase;
  beforeEach(async () => {
    db = await freshDatabase();
  });

  it('seeds through a NOINHERIT login that may only SET ROLE symphony_control', async () => {
    const control = await db.createLoginRole(['symphony_control'], { inherit: false });

    const result = await runCli(
      ['policy', 'seed', '--file', policyFile, '--acts-as', 'symphony_control'],
      { DATABASE_URL: control.url },
    );

    expect(result, result.stderr).toMatchObject({ code: 0 });
    expect(await policyRows(db)).toEqual([
      { version: '2025-06', status: 'ACTIVE', checksum: policyChecksum(POLICY) },
    ]);
  });

  it('a login without the control role fails closed with the SQLSTATE and what to do', async () => {
    const producer = await db.createLoginRole(['symphony_ingest']);
    const other = await files.write('other.json', JSON.stringify({ version: 'other-1' }));

    const result = await runCli(['policy', 'seed', '--file', other], {
      DATABASE_URL: producer.url,
    });

    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('SQLSTATE 42501');
    expect(result.stderr).toContain('Nothing was changed');
    expect(await policyRows(db)).toEqual([]);
  });
});
