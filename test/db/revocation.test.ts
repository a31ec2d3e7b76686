import { createHash } from 'node:crypto';
import type { Queryable } from '../../src/db/pool.ts';
import { describe, expect, it } from 'vitest';
import { freshDatabase } from '../support/database.ts';
import { connectAsEach, RUNTIME_ROLES } from '../support/role-boundaries.ts';
import { expectSqlState } from '../support/sqlstate.ts';

const db = await freshDatabase();
const as = await connectAsEach(db, RUNTIME_ROLES);

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** Each revocation table with the column holding its hashed credential. */
const TABLES = [
  { table: 'revoked_client_certs', credential: 'cert_fingerprint' },
  { table: 'revoked_tokens', credential: 'token_hash' },
] as const;

function revoke(
  client: Queryable,
  target: (typeof TABLES)[number],
  credential: string,
  times: { revokedAt?: string; expiresAt?: string | null } = {},
) {
  return client.query(
    `INSERT INTO public.${target.table} (${target.credential}, revoked_at, expires_at, reason_code, revoked_by)
     VALUES ($1, coalesce($2::timestamptz, now()), $3, 'KEY_COMPROMISE', 'ops@example.test')`,
    [credential, times.revokedAt ?? null, times.expiresAt ?? null],
  );
}

/** A revocation as control records it: the database sets revoked_at and revoked_by. */
function revokeAsControl(client: Queryable, target: (typeof TABLES)[number], credential: string) {
  return client.query(
    `INSERT INTO public.${target.table} (${target.credential}, reason_code) VALUES ($1, 'KEY_COMPROMISE')`,
    [credential],
  );
}

describe('revocation tables', () => {
  async function expectAppendOnly(target: (typeof TABLES)[number]) {
    await revoke(db.owner, target, sha256(`append-only ${target.table}`));
    for (const statement of [
      `UPDATE public.${target.table} SET expires_at = now() + interval '1 day'`,
      `DELETE FROM public.${target.table}`,
      `TRUNCATE public.${target.table}`,
    ]) {
      const error = await expectSqlState(db.owner.query(statement), 'P0001');
      expect(error.message).toMatch(/^INV-REV-APPEND-ONLY:/);
    }
    const { rows } = await db.owner.query(`SELECT count(*)::int AS n FROM public.${target.table}`);
    expect(rows[0].n).toBeGreaterThan(0);
  }

  it('INV-REV-APPEND-ONLY: UPDATE, DELETE and TRUNCATE of revoked_client_certs are refused with P0001, even for the owner', async () => {
    await expectAppendOnly(TABLES[0]);
  });

  it('INV-REV-APPEND-ONLY: UPDATE, DELETE and TRUNCATE of revoked_tokens are refused with P0001, even for the owner', async () => {
    await expectAppendOnly(TABLES[1]);
  });

  it('INV-REV-EXPIRY: an expiry before the revocation is refused with 23514; equal or none is accepted', async () => {
    for (const target of TABLES) {
      const revokedAt = '2030-01-01T00:00:00Z';
      await expectSqlState(
        revoke(db.owner, target, sha256('expiry-before'), {
          revokedAt,
          expiresAt: '2029-12-31T23:59:59Z',
        }),
        '23514',
      );
      await revoke(db.owner, target, sha256('expiry-equal'), { revokedAt, expiresAt: revokedAt });
      await revoke(db.owner, target, sha256('expiry-none'), { revokedAt, expiresAt: null });
    }
  });

  it('INV-REV-TOKEN-HASH: a token hash that is not a lowercase hex sha256 is refused with P7201', async () => {
    const tokens = TABLES[1];
    const hash = sha256('a token');
    for (const malformed of [
      hash.toUpperCase(),
      hash.slice(1),
      `${hash}0`,
      'eyJhbGciOiJIUzI1NiJ9.raw.token',
      '',
    ]) {
      const error = await expectSqlState(revoke(db.owner, tokens, malformed), 'P7201');
      expect(error.message).toMatch(/^INV-REV-TOKEN-HASH:/);
    }
    await revoke(db.owner, tokens, hash);
  });

  it('INV-REV-CERT-FINGERPRINT: a certificate fingerprint that is not a lowercase hex sha256 is refused with P7202', async () => {
    const certs = TABLES[0];
    const fingerprint = sha256('a certificate');
    const colonSeparated = fingerprint.toUpperCase().match(/../g)!.join(':');
    for (const malformed of [colonSeparated, fingerprint.toUpperCase(), fingerprint.slice(0, 40)]) {
      await expectSqlState(revoke(db.owner, certs, malformed), 'P7202');
    }
    await revoke(db.owner, certs, fingerprint);
  });
});

describe('revocation role boundaries', () => {
  it('INV-REV-GRANTS: control records and reads revocations but cannot change or remove them', async () => {
    for (const target of TABLES) {
      await revokeAsControl(as.symphony_control, target, sha256(`control ${target.table}`));
      await as.symphony_control.query(`SELECT * FROM public.${target.table}`);
      await expectSqlState(
        as.symphony_control.query(`UPDATE public.${target.table} SET reason_code = 'X'`),
        '42501',
      );
      await expectSqlState(
        as.symphony_control.query(`DELETE FROM public.${target.table}`),
        '42501',
      );
      await expectSqlState(as.symphony_control.query(`TRUNCATE public.${target.table}`), '42501');
    }
  });

  it('INV-REV-GRANTS: readonly and auditor only read revocations; ingest and executor have no access', async () => {
    for (const target of TABLES) {
      for (const reader of ['symphony_readonly', 'symphony_auditor'] as const) {
        await as[reader].query(`SELECT * FROM public.${target.table}`);
        await expectSqlState(revoke(as[reader], target, sha256('reader')), '42501');
      }
      for (const role of ['symphony_ingest', 'symphony_executor'] as const) {
        await expectSqlState(as[role].query(`SELECT * FROM public.${target.table}`), '42501');
        await expectSqlState(revoke(as[role], target, sha256('runtime')), '42501');
      }
    }
  });
});
