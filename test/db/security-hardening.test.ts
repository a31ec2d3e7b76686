import { createHash, randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import {
  claimOutboxBatch,
  completeOutboxAttempt,
  completeOutboxBatch,
  enqueuePaymentOutbox,
} from '../../src/db/outbox.ts';
import { freshDatabase } from '../support/database.ts';
import { backendPid, waitUntilBlockedOnLock } from '../support/lock-waits.ts';
import { uniquePrefix } from '../support/outbox-fixtures.ts';
import { waitUntil } from '../support/processes.ts';
import { connectAsEach, RUNTIME_ROLES } from '../support/role-boundaries.ts';
import { expectSqlState } from '../support/sqlstate.ts';
import { rolledBack } from '../support/transactions.ts';

// The red-team reproductions of issue 12, run again as an attacker would: each is refused
// (exact SQLSTATE) or harmless (observable state).
const db = await freshDatabase();
const as = await connectAsEach(db, RUNTIME_ROLES);
// A login that is a member of nothing: what any login of the cluster can do here.
const stranger = await (await db.createLoginRole([])).connect();
afterAll(() => stranger.end());

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** The advisory key enqueue takes for an idempotency key (0021's outbox_key_lock_id). */
const KEY_LOCK = `hashtextextended('symphony.idempotency_key' || chr(31) || $1, 1)`;

async function loginFor(role: string): Promise<{ name: string; client: pg.Client }> {
  const login = await db.createLoginRole([role]);
  const client = await login.connect(role);
  afterAll(() => client.end());
  return { name: login.name, client };
}
// Two logins of each of the roles whose callers the proofs tell apart.
const [ingestA, ingestB, executorA, executorB] = await Promise.all(
  ['symphony_ingest', 'symphony_ingest', 'symphony_executor', 'symphony_executor'].map(loginFor),
);

function attest(client: pg.ClientBase, stream: string, receivedAt = 'now()') {
  return client.query(
    `SELECT * FROM public.record_ingress_attestation(
       $1, $2, 'instr-sec', 'participant-sec', ${receivedAt}, $3, 'MTLS', NULL, NULL, NULL, 'ACCEPTED', NULL)`,
    [stream, randomUUID(), sha256('payload')],
  );
}

describe('schema locks are bounded (0025)', () => {
  it('INV-SCHEMA-LOCK-BOUNDED: a login holding an idempotency key or a stream key delays enqueue and attestation by at most the bound, then 55P03 names the lock', async () => {
    const key = `${uniquePrefix('locked')}-key`;
    const stream = `stream-${randomUUID()}`;
    // Any login can compute and hold the keys: they come from public strings.
    await stranger.query(`SELECT pg_advisory_lock(${KEY_LOCK})`, [key]);
    await stranger.query('SELECT pg_advisory_lock(7301, hashtext($1))', [stream]);
    try {
      // The caller's shorter lock_timeout is honoured...
      await as.symphony_ingest.query("SET lock_timeout = '300ms'");
      const single = await expectSqlState(
        enqueuePaymentOutbox(as.symphony_ingest, {
          instructionId: `${key}-instr`,
          participantId: 'participant-sec',
          idempotencyKey: key,
          railType: 'sandbox',
          payload: { amount: 1 },
        }),
        '55P03',
      );
      expect(single.message).toMatch(/INV-SCHEMA-LOCK-BOUNDED: the idempotency key lock/);
      const batch = await expectSqlState(
        as.symphony_ingest.query('SELECT * FROM public.enqueue_payment_outbox_batch($1::jsonb)', [
          JSON.stringify([
            {
              instruction_id: `${key}-batch`,
              participant_id: 'participant-sec',
              idempotency_key: key,
              rail_type: 'sandbox',
              payload: { amount: 1 },
            },
          ]),
        ]),
        '55P03',
      );
      expect(batch.message).toMatch(/idempotency key lock/);
      // ...and without one (lock_timeout 0 waits for ever) the schema's own bound ends the wait.
      await as.symphony_ingest.query('SET lock_timeout = 0');
      const attestation = await expectSqlState(attest(as.symphony_ingest, stream), '55P03');
      expect(attestation.message).toMatch(
        /the ingress attestation stream lock .* gave up after 5000ms/,
      );
      // The caller's own setting is untouched afterwards.
      const { rows } = await as.symphony_ingest.query<{ lock_timeout: string }>(
        'SHOW lock_timeout',
      );
      expect(rows[0]?.lock_timeout).toBe('0');
    } finally {
      await stranger.query('SELECT pg_advisory_unlock_all()');
    }
    // Once the holder lets go, the same calls go through.
    await attest(as.symphony_ingest, stream);
  }, 60_000);

  it('INV-SCHEMA-LOCK-BOUNDED: an enqueue waiting behind a legitimate holder of its key proceeds when the holder commits', async () => {
    const key = `${uniquePrefix('waiting')}-key`;
    const producer = await db.connect();
    try {
      await producer.query('BEGIN');
      await producer.query('SELECT pg_advisory_xact_lock(' + KEY_LOCK + ')', [key]);
      const pid = await backendPid(as.symphony_ingest);
      const waiting = enqueuePaymentOutbox(as.symphony_ingest, {
        instructionId: `${key}-instr`,
        participantId: 'participant-sec',
        idempotencyKey: key,
        railType: 'sandbox',
        payload: { amount: 2 },
      });
      await waitUntilBlockedOnLock(db.owner, pid);
      await producer.query('COMMIT');
      expect((await waiting).state).toBe('PENDING');
    } finally {
      await producer.end();
    }
  }, 60_000);
});

describe('no temporary objects and no large objects (0026)', () => {
  it('INV-DB-NO-TEMP: no runtime role and no plain login can create a temporary table (42501)', async () => {
    for (const client of [...Object.values(as), stranger]) {
      await expectSqlState(client.query('CREATE TEMPORARY TABLE t_evil (x int)'), '42501');
    }
  });

  it('INV-DB-NO-LARGE-OBJECTS: no runtime role and no plain login can create a large object (42501)', async () => {
    for (const client of [...Object.values(as), stranger]) {
      for (const statement of [
        'SELECT lo_create(0)',
        'SELECT lo_creat(-1)',
        "SELECT lo_from_bytea(0, '\\x00'::bytea)",
        "SELECT lo_import('/etc/hostname')",
      ]) {
        await expectSqlState(client.query(statement), '42501');
      }
    }
    const { rows } = await db.owner.query('SELECT oid FROM pg_catalog.pg_largeobject_metadata');
    expect(rows).toEqual([]);
  });
});

describe('a NOLOGIN owner owns the schema (0027)', () => {
  it('INV-OWNER-NOT-LOGIN: after migrate as a superuser, every object of schema public belongs to symphony_owner, a NOLOGIN non-superuser', async () => {
    // The template this database copies was migrated by the test server's superuser.
    const { rows: migratedBy } = await db.owner.query<{ superuser: boolean }>(
      'SELECT rolsuper AS superuser FROM pg_catalog.pg_roles WHERE rolname = current_user',
    );
    expect(migratedBy).toEqual([{ superuser: true }]);

    const { rows: owners } = await db.owner.query<{ kind: string; owner: string; n: number }>(`
      WITH objects AS (
        SELECT 'relation' AS kind, relowner AS owner FROM pg_catalog.pg_class
         WHERE relnamespace = 'public'::regnamespace
        UNION ALL
        SELECT CASE WHEN prosecdef THEN 'definer function' ELSE 'function' END, proowner
          FROM pg_catalog.pg_proc WHERE pronamespace = 'public'::regnamespace
        UNION ALL
        SELECT 'type', typowner FROM pg_catalog.pg_type WHERE typnamespace = 'public'::regnamespace
      )
      SELECT o.kind, r.rolname AS owner, count(*)::int AS n
        FROM objects o JOIN pg_catalog.pg_roles r ON r.oid = o.owner
       GROUP BY 1, 2 ORDER BY 1, 2`);
    expect(owners.map(({ kind, owner }) => `${kind}: ${owner}`)).toEqual([
      'definer function: symphony_owner',
      'function: symphony_owner',
      'relation: symphony_owner',
      'type: symphony_owner',
    ]);
    expect(owners.every((row) => row.n > 0)).toBe(true);

    const { rows: owner } = await db.owner.query(
      `SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls,
              (SELECT count(*)::int FROM pg_catalog.pg_auth_members WHERE member = r.oid) AS memberships
         FROM pg_catalog.pg_roles r WHERE rolname = 'symphony_owner'`,
    );
    expect(owner).toEqual([
      {
        rolcanlogin: false,
        rolsuper: false,
        rolcreatedb: false,
        rolcreaterole: false,
        rolreplication: false,
        rolbypassrls: false,
        memberships: 0,
      },
    ]);
  });

  it('INV-OWNER-NOT-LOGIN: no runtime role and no plain login can act as symphony_owner (42501)', async () => {
    for (const client of [...Object.values(as), stranger]) {
      await expectSqlState(client.query('SET ROLE symphony_owner'), '42501');
    }
  });
});

describe("control's writes are checked (0028)", () => {
  it('INV-POL-INSERT-ACTIVE: control cannot insert a RETIRED or GRACE policy (P7104)', async () => {
    for (const status of ['RETIRED', 'GRACE']) {
      await rolledBack(as.symphony_control, (client) =>
        expectSqlState(
          client.query(
            `INSERT INTO public.policy_versions (version, status, checksum, grace_expires_at, created_at, updated_at)
             VALUES ('fabricated', $1, 'not-a-sha256', '2001-01-01', '2001-01-01', '2001-01-01')`,
            [status],
          ),
          'P7104',
        ),
      );
    }
  });

  it('INV-POL-CHECKSUM-FORMAT: control cannot insert a policy whose checksum is not a lowercase hex sha256 (P7105)', async () => {
    for (const checksum of ['not-a-sha256', sha256('x').toUpperCase(), sha256('x').slice(1)]) {
      await rolledBack(as.symphony_control, (client) =>
        expectSqlState(
          client.query(
            `INSERT INTO public.policy_versions (version, status, checksum) VALUES ('bad-sum', 'ACTIVE', $1)`,
            [checksum],
          ),
          'P7105',
        ),
      );
    }
  });

  it('INV-CONTROL-SERVER-TIME: control cannot date a policy or a revocation (P7106, P7203)', async () => {
    for (const column of ['created_at', 'updated_at']) {
      await rolledBack(as.symphony_control, (client) =>
        expectSqlState(
          client.query(
            `INSERT INTO public.policy_versions (version, status, checksum, ${column})
             VALUES ('dated', 'ACTIVE', $1, '2001-01-01')`,
            [sha256('dated')],
          ),
          'P7106',
        ),
      );
    }
    for (const table of ['revoked_tokens', 'revoked_client_certs']) {
      const column = table === 'revoked_tokens' ? 'token_hash' : 'cert_fingerprint';
      for (const revokedAt of ['1990-01-01', '2999-01-01']) {
        await expectSqlState(
          as.symphony_control.query(
            `INSERT INTO public.${table} (${column}, revoked_at, reason_code) VALUES ($1, $2, 'KEY_COMPROMISE')`,
            [sha256(`${table} ${revokedAt}`), revokedAt],
          ),
          'P7203',
        );
      }
    }
  });

  it("INV-REV-AUTHOR: control cannot record a revocation in someone else's name (P7204); its own name and the server's time are recorded", async () => {
    const { rows: me } = await as.symphony_control.query<{ login: string }>(
      'SELECT session_user AS login',
    );
    for (const table of ['revoked_tokens', 'revoked_client_certs']) {
      const column = table === 'revoked_tokens' ? 'token_hash' : 'cert_fingerprint';
      await expectSqlState(
        as.symphony_control.query(
          `INSERT INTO public.${table} (${column}, reason_code, revoked_by) VALUES ($1, 'KEY_COMPROMISE', 'alice@example.test')`,
          [sha256(`${table} impersonated`)],
        ),
        'P7204',
      );
      const { rows } = await as.symphony_control.query<{
        revoked_by: string;
        server_time: boolean;
      }>(
        `INSERT INTO public.${table} (${column}, reason_code) VALUES ($1, 'KEY_COMPROMISE')
         RETURNING revoked_by, revoked_at = now() AS server_time`,
        [sha256(`${table} own`)],
      );
      expect(rows).toEqual([{ revoked_by: me[0]!.login, server_time: true }]);
    }
  });
});

describe('ingress attestations bind time and writer (0028)', () => {
  it('INV-ATT-RECEIVED-AT: ingest cannot attest a received_at that is infinite, BC, in the future or over an hour old (P7303)', async () => {
    const stream = `stream-${randomUUID()}`;
    for (const receivedAt of [
      "'infinity'::timestamptz",
      "'-infinity'::timestamptz",
      "'2026-01-01 00:00:00+00 BC'::timestamptz",
      "now() + interval '1 day'",
      "now() - interval '2 hours'",
    ]) {
      await expectSqlState(attest(as.symphony_ingest, stream, receivedAt), 'P7303');
    }
    await attest(as.symphony_ingest, stream, "now() - interval '30 minutes'");
  });

  it('INV-ATT-STREAM-WRITER: a stream belongs to the login that began it; another ingest login is refused (P7304)', async () => {
    const [first, second] = [ingestA!, ingestB!];
    const stream = `stream-${randomUUID()}`;
    await attest(first.client, stream);
    await expectSqlState(attest(second.client, stream), 'P7304');
    await attest(first.client, stream);
    await attest(second.client, `stream-${randomUUID()}`);
    const { rows } = await db.owner.query<{ writer: string }>(
      'SELECT DISTINCT writer FROM public.ingress_attestations WHERE stream_id = $1',
      [stream],
    );
    expect(rows).toEqual([{ writer: first.name }]);
  });

  it('INV-ATT-LOSSLESS-TIME: a received_at moved to the same wall-clock time BC, or from +infinity to -infinity, no longer verifies', async () => {
    const stream = `stream-${randomUUID()}`;
    await attest(as.symphony_ingest, stream);
    const verifies = `encode(sha256(convert_to(public.ingress_attestation_canonical(a), 'UTF8')), 'hex') = a.record_hash`;
    const owner = await db.connect();
    try {
      await rolledBack(owner, async (client) => {
        const { rows: before } = await client.query<{ ok: boolean }>(
          `SELECT ${verifies} AS ok FROM public.ingress_attestations a WHERE stream_id = $1`,
          [stream],
        );
        expect(before).toEqual([{ ok: true }]);
        // Tampering as the superuser, past the append-only trigger.
        await client.query('SET LOCAL session_replication_role = replica');
        const { rows: tampered } = await client.query<{ same_v1_text: boolean; ok: boolean }>(
          `WITH original AS (
             SELECT received_at FROM public.ingress_attestations WHERE stream_id = $1
           ), moved AS (
             UPDATE public.ingress_attestations a
                SET received_at = (to_char(a.received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || ' BC')::timestamp AT TIME ZONE 'UTC'
              WHERE a.stream_id = $1
             RETURNING a.*
           )
           SELECT to_char(m.received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                    = to_char(o.received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS same_v1_text,
                  encode(sha256(convert_to(public.ingress_attestation_canonical(m::public.ingress_attestations), 'UTF8')), 'hex') = m.record_hash AS ok
             FROM moved m, original o`,
          [stream],
        );
        // 0011's rendering could not tell the two apart; the v2 hash can.
        expect(tampered).toEqual([{ same_v1_text: true, ok: false }]);

        for (const [from, to] of [
          ['infinity', '-infinity'],
          ['-infinity', 'infinity'],
        ]) {
          await client.query(
            'UPDATE public.ingress_attestations SET received_at = $2::timestamptz WHERE stream_id = $1',
            [stream, from],
          );
          await client.query(
            `UPDATE public.ingress_attestations a SET record_hash = encode(sha256(convert_to(public.ingress_attestation_canonical(a), 'UTF8')), 'hex') WHERE stream_id = $1`,
            [stream],
          );
          await client.query(
            'UPDATE public.ingress_attestations SET received_at = $2::timestamptz WHERE stream_id = $1',
            [stream, to],
          );
          const { rows } = await client.query<{ ok: boolean }>(
            `SELECT ${verifies} AS ok FROM public.ingress_attestations a WHERE stream_id = $1`,
            [stream],
          );
          expect(rows).toEqual([{ ok: false }]);
        }
      });
    } finally {
      await owner.end();
    }
  });
});

describe('lease tokens and completions (0029)', () => {
  async function claimOne(executor: pg.ClientBase, workerId: string, leaseSeconds = 60) {
    const prefix = uniquePrefix('sec');
    await enqueuePaymentOutbox(as.symphony_ingest, {
      instructionId: `${prefix}-instr`,
      participantId: `${prefix}-participant`,
      idempotencyKey: `${prefix}-key`,
      railType: `rail_${prefix.replace(/[^a-z0-9]/g, '_')}`,
      payload: { amount: 3 },
    });
    const claimed = await claimOutboxBatch(executor, {
      batchSize: 1,
      workerId,
      leaseSeconds,
      railTypes: [`rail_${prefix.replace(/[^a-z0-9]/g, '_')}`],
    });
    expect(claimed).toHaveLength(1);
    return claimed[0]!;
  }

  it('INV-LEASE-TOKEN-HIDDEN: readonly, auditor and control cannot read lease_token (42501), only the other columns', async () => {
    for (const role of ['symphony_readonly', 'symphony_auditor', 'symphony_control'] as const) {
      await expectSqlState(
        as[role].query('SELECT lease_token FROM public.payment_outbox_pending'),
        '42501',
      );
      await expectSqlState(as[role].query('SELECT * FROM public.payment_outbox_pending'), '42501');
      await as[role].query(
        'SELECT outbox_id, claimed_by, lease_expires_at FROM public.payment_outbox_pending',
      );
    }
  });

  it('INV-ATTEMPT-COMPLETED-BY: an attempt records the login that completed it, whatever worker id it claims to be', async () => {
    const [workerA, intruder] = [executorA!, executorB!];
    const item = await claimOne(workerA.client, 'worker-a');
    // Even holding worker-a's token, another login is recorded as itself.
    await completeOutboxAttempt(intruder.client, 'worker-a', {
      outboxId: item.outboxId,
      leaseToken: item.leaseToken,
      state: 'FAILED',
    });
    const { rows } = await db.owner.query(
      'SELECT worker_id, completed_by FROM public.payment_outbox_attempts WHERE outbox_id = $1',
      [item.outboxId],
    );
    expect(rows).toEqual([{ worker_id: 'worker-a', completed_by: intruder.name }]);

    const second = await claimOne(workerA.client, 'worker-a');
    await completeOutboxBatch(workerA.client, 'worker-a', [
      { outboxId: second.outboxId, leaseToken: second.leaseToken, state: 'DISPATCHED' },
    ]);
    const { rows: batch } = await db.owner.query(
      'SELECT completed_by FROM public.payment_outbox_attempts WHERE outbox_id = $1',
      [second.outboxId],
    );
    expect(batch).toEqual([{ completed_by: workerA.name }]);
  });

  it('INV-COMPLETE-FENCE-CLOCK: a completion whose transaction began before the lease expired is refused once it has expired (P7002, and lease_lost in a batch)', async () => {
    for (const batch of [false, true]) {
      const item = await claimOne(as.symphony_executor, 'worker-clock', 1);
      await rolledBack(as.symphony_executor, async (client) => {
        const { rows } = await client.query<{ started: Date }>('SELECT now() AS started');
        expect(rows[0]!.started.getTime()).toBeLessThan(item.leaseExpiresAt.getTime());
        await waitUntil(
          async () => {
            const { rows: past } = await db.owner.query<{ expired: boolean }>(
              'SELECT clock_timestamp() > $1::timestamptz AS expired',
              [item.leaseExpiresAt],
            );
            return past[0]?.expired ? true : undefined;
          },
          { description: 'the lease to expire', attempts: 400, intervalMs: 25 },
        );
        const completion = {
          outboxId: item.outboxId,
          leaseToken: item.leaseToken,
          state: 'DISPATCHED' as const,
        };
        if (batch) {
          const results = await completeOutboxBatch(client, 'worker-clock', [completion]);
          expect(results.map((result) => result.leaseLost)).toEqual([true]);
        } else {
          await expectSqlState(
            client.query(
              `SELECT * FROM public.complete_outbox_attempt($1, $2, 'worker-clock', 'DISPATCHED')`,
              [completion.outboxId, completion.leaseToken],
            ),
            'P7002',
          );
        }
      });
    }
  }, 60_000);
});
