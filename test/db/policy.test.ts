import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { freshDatabase } from '../support/database.ts';
import { connectAsEach } from '../support/role-boundaries.ts';
import { expectSqlState } from '../support/sqlstate.ts';
import { rolledBack, rolledBackOn } from '../support/transactions.ts';

// Every proof runs in a transaction that is rolled back (policy rows can never be deleted),
// as the owner unless it is a role-boundary proof: triggers, not grants, refuse here.
const db = await freshDatabase();
const as = await connectAsEach(db, [
  'symphony_control',
  'symphony_executor',
  'symphony_ingest',
  'symphony_readonly',
  'symphony_auditor',
]);

const CHECKSUM = 'a'.repeat(64);

async function insertPolicy(
  client: pg.ClientBase,
  version: string,
  status: 'ACTIVE' | 'GRACE' | 'RETIRED' = 'ACTIVE',
  checksum = CHECKSUM,
) {
  const grace = status === 'ACTIVE' ? null : new Date(Date.now() + 86_400_000);
  await client.query(
    'INSERT INTO public.policy_versions (version, status, checksum, grace_expires_at) VALUES ($1, $2, $3, $4)',
    [version, status, checksum, grace],
  );
}

/** ACTIVE -> GRACE for `version`, then `successor` becomes ACTIVE. */
async function rotate(client: pg.ClientBase, version: string, successor: string) {
  await client.query(
    "UPDATE public.policy_versions SET status = 'GRACE', grace_expires_at = now() + interval '1 day' WHERE version = $1",
    [version],
  );
  await insertPolicy(client, successor);
}

async function statuses(client: pg.ClientBase) {
  const { rows } = await client.query<{ version: string; status: string; is_active: boolean }>(
    'SELECT version, status, is_active FROM public.policy_versions ORDER BY version',
  );
  return rows;
}

describe('policy_versions lifecycle', () => {
  it('INV-POL-SINGLE-ACTIVE: a second ACTIVE policy is refused with 23505', async () => {
    await rolledBackOn(db.owner, async (client) => {
      await insertPolicy(client, 'v1');
      await expectSqlState(insertPolicy(client, 'v2'), '23505');
    });
  });

  it('INV-POL-FORWARD-ONLY: a rotation moves ACTIVE -> GRACE -> RETIRED and activates the successor in one transaction', async () => {
    await rolledBackOn(db.owner, async (client) => {
      await insertPolicy(client, 'v1');
      await rotate(client, 'v1', 'v2');
      await client.query(
        "UPDATE public.policy_versions SET status = 'RETIRED' WHERE version = 'v1'",
      );
      expect(await statuses(client)).toEqual([
        { version: 'v1', status: 'RETIRED', is_active: false },
        { version: 'v2', status: 'ACTIVE', is_active: true },
      ]);
      // The deferred last-ACTIVE check runs here and finds v2.
      await client.query('SET CONSTRAINTS ALL IMMEDIATE');
    });
  });

  it('INV-POL-FORWARD-ONLY: every backward or GRACE-skipping status transition is refused with P7101', async () => {
    const refused: Array<{ from: 'ACTIVE' | 'GRACE' | 'RETIRED'; to: string }> = [
      { from: 'ACTIVE', to: 'RETIRED' },
      { from: 'GRACE', to: 'ACTIVE' },
      { from: 'RETIRED', to: 'ACTIVE' },
      { from: 'RETIRED', to: 'GRACE' },
    ];
    for (const { from, to } of refused) {
      await rolledBackOn(db.owner, async (client) => {
        await insertPolicy(client, 'p', from);
        const error = await expectSqlState(
          client.query(
            `UPDATE public.policy_versions
                SET status = $1, grace_expires_at = CASE WHEN $1 = 'ACTIVE' THEN NULL ELSE grace_expires_at END
              WHERE version = 'p'`,
            [to],
          ),
          'P7101',
        );
        expect(error.message).toMatch(/^INV-POL-FORWARD-ONLY: invalid policy status transition/);
      });
    }
  });

  it('INV-POL-FORWARD-ONLY: a RETIRED policy cannot change its grace expiry (P7101)', async () => {
    await rolledBackOn(db.owner, async (client) => {
      await insertPolicy(client, 'old', 'RETIRED');
      await expectSqlState(
        client.query(
          "UPDATE public.policy_versions SET grace_expires_at = now() WHERE version = 'old'",
        ),
        'P7101',
      );
    });
  });

  it('INV-POL-NO-DELETE: DELETE and TRUNCATE of policy versions are refused with P7102', async () => {
    await rolledBackOn(db.owner, async (client) => {
      await insertPolicy(client, 'old', 'RETIRED');
      await client.query('SAVEPOINT before_delete');
      await expectSqlState(
        client.query("DELETE FROM public.policy_versions WHERE version = 'old'"),
        'P7102',
      );
      await client.query('ROLLBACK TO SAVEPOINT before_delete');
      await expectSqlState(client.query('TRUNCATE public.policy_versions'), 'P7102');
    });
  });

  it('INV-POL-LAST-ACTIVE: committing the demotion of the only ACTIVE policy is refused with P7103', async () => {
    const client = await db.connect();
    try {
      await client.query('BEGIN');
      await insertPolicy(client, 'only');
      await client.query(
        "UPDATE public.policy_versions SET status = 'GRACE', grace_expires_at = now() + interval '1 day' WHERE version = 'only'",
      );
      const error = await expectSqlState(client.query('COMMIT'), 'P7103');
      expect(error.message).toMatch(/^INV-POL-LAST-ACTIVE:/);
      expect(
        (await client.query('SELECT count(*)::int AS n FROM public.policy_versions')).rows,
      ).toEqual([{ n: 0 }]);
    } finally {
      await client.end();
    }
  });

  it('INV-POL-CHECKSUM: an empty checksum is refused with 23514', async () => {
    await rolledBackOn(db.owner, async (client) => {
      await expectSqlState(insertPolicy(client, 'v1', 'ACTIVE', ''), '23514');
    });
  });

  it('INV-POL-GRACE-EXPIRY: GRACE without grace_expires_at and ACTIVE with one are refused with 23514', async () => {
    await rolledBackOn(db.owner, async (client) => {
      await expectSqlState(
        client.query(
          "INSERT INTO public.policy_versions (version, status, checksum) VALUES ('g', 'GRACE', $1)",
          [CHECKSUM],
        ),
        '23514',
      );
    });
    await rolledBackOn(db.owner, async (client) => {
      await expectSqlState(
        client.query(
          "INSERT INTO public.policy_versions (version, status, checksum, grace_expires_at) VALUES ('a', 'ACTIVE', $1, now())",
          [CHECKSUM],
        ),
        '23514',
      );
    });
    await rolledBackOn(db.owner, async (client) => {
      await insertPolicy(client, 'v1');
      // Demoting without saying when the grace period ends.
      await expectSqlState(
        client.query("UPDATE public.policy_versions SET status = 'GRACE' WHERE version = 'v1'"),
        '23514',
      );
    });
  });

  it('INV-POL-IMMUTABLE-CONTENT: the version, checksum and created_at of a policy cannot be changed (P0001 naming the invariant)', async () => {
    for (const change of [
      "checksum = repeat('b', 64)",
      "version = 'v1-edited'",
      "created_at = created_at - interval '1 day'",
    ]) {
      await rolledBackOn(db.owner, async (client) => {
        await insertPolicy(client, 'v1');
        const error = await expectSqlState(
          client.query(`UPDATE public.policy_versions SET ${change} WHERE version = 'v1'`),
          'P0001',
        );
        // P0001 is any RAISE EXCEPTION: the message shows it is this invariant that refused.
        expect(error.message).toContain('INV-POL-IMMUTABLE-CONTENT: policy v1 is immutable');
      });
    }
  });
});

describe('policy_versions role boundaries', () => {
  it('INV-POL-GRANTS: executor, readonly and auditor can read policies but not write them; ingest cannot read them', async () => {
    for (const reader of ['symphony_executor', 'symphony_readonly', 'symphony_auditor'] as const) {
      await as[reader].query(
        'SELECT version, checksum FROM public.policy_versions WHERE is_active',
      );
      await expectSqlState(
        as[reader].query(
          "INSERT INTO public.policy_versions (version, status, checksum) VALUES ('x', 'ACTIVE', 'c')",
        ),
        '42501',
      );
      await expectSqlState(
        as[reader].query("UPDATE public.policy_versions SET status = 'GRACE'"),
        '42501',
      );
    }
    await expectSqlState(as.symphony_ingest.query('SELECT * FROM public.policy_versions'), '42501');
  });

  it('INV-POL-GRANTS: control can seed and rotate policies but cannot delete or truncate them', async () => {
    const control = as.symphony_control;
    await rolledBack(control, async () => {
      await insertPolicy(control, 'c1');
      await rotate(control, 'c1', 'c2');
      expect((await statuses(control)).map((row) => row.status)).toEqual(['GRACE', 'ACTIVE']);
      await control.query('SAVEPOINT before_delete');
      await expectSqlState(control.query('DELETE FROM public.policy_versions'), '42501');
      await control.query('ROLLBACK TO SAVEPOINT before_delete');
      await expectSqlState(control.query('TRUNCATE public.policy_versions'), '42501');
    });
  });
});
