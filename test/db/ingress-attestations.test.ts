import { createHash, randomUUID } from 'node:crypto';
import type { Queryable } from '../../src/db/pool.ts';
import { describe, expect, it } from 'vitest';
import { freshDatabase } from '../support/database.ts';
import { backendPid, waitUntilBlockedOnLock } from '../support/lock-waits.ts';
import { connectAsEach, RUNTIME_ROLES } from '../support/role-boundaries.ts';
import { expectSqlState } from '../support/sqlstate.ts';

const db = await freshDatabase();
const as = await connectAsEach(db, RUNTIME_ROLES);

const PAYLOAD_SHA256 = createHash('sha256').update('{"amount":100}').digest('hex');
const FINGERPRINT = createHash('sha256').update('client certificate DER').digest('hex');

const newStream = () => `stream-${randomUUID()}`;

interface Recorded {
  attestation_id: string;
  stream_seq: string;
  prev_hash: string | null;
  record_hash: string;
}

/** Records an accepted mTLS request through the writer's entry point. */
async function attest(
  client: Queryable,
  stream: string,
  request = randomUUID(),
): Promise<Recorded> {
  const { rows } = await client.query<Recorded>(
    `SELECT * FROM public.record_ingress_attestation(
       $1, $2, $3, 'bänk-ü', now() - interval '5 milliseconds', $4, 'MTLS', $5, NULL, NULL, 'ACCEPTED', NULL)`,
    [stream, request, `instr-${request}`, PAYLOAD_SHA256, FINGERPRINT],
  );
  return rows[0]!;
}

/** A direct INSERT (owner only) naming its own prev_hash, as a forger or a buggy writer would. */
function insertDirect(
  client: Queryable,
  stream: string,
  prevHash: string | null,
  extra: Record<string, unknown> = {},
) {
  const columns = { stream_id: stream, prev_hash: prevHash, ...extra };
  const names = Object.keys(columns);
  return client.query(
    `INSERT INTO public.ingress_attestations
       (request_id, instruction_id, participant_id, received_at, payload_sha256, auth_method, decision, ${names.join(', ')})
     VALUES ($1, 'instr-direct', 'participant-direct', now(), $2, 'JWT', 'ACCEPTED',
             ${names.map((_, index) => `$${index + 3}`).join(', ')})`,
    [randomUUID(), PAYLOAD_SHA256, ...Object.values(columns)],
  );
}

/**
 * The stream as an independent verifier sees it: every field as text, the record hash
 * recomputed from the documented encoding ("symphony.ingress_attestation.v2", then
 * "|-" for NULL or "|<utf8 byte length>:<value>" per field, in the order below; times as
 * exact epoch seconds with six decimals, 'Infinity' / '-Infinity' for the infinities).
 */
async function verifyStream(stream: string) {
  const { rows } = await db.owner.query<Record<string, string | null> & { record_hash: string }>(
    `SELECT hash_version::text, attestation_id::text, stream_id, stream_seq::text, prev_hash, writer,
            request_id, instruction_id, participant_id,
            extract(epoch FROM received_at)::text AS received_at,
            extract(epoch FROM recorded_at)::text AS recorded_at,
            payload_sha256, auth_method, cert_fingerprint, key_id, jti, decision, reason_code, record_hash
       FROM public.ingress_attestations a WHERE a.stream_id = $1 ORDER BY a.stream_seq`,
    [stream],
  );
  return rows.map(({ record_hash, ...fields }) => {
    const canonical =
      'symphony.ingress_attestation.v2' +
      Object.values(fields)
        .map((value) => (value === null ? '|-' : `|${Buffer.byteLength(value, 'utf8')}:${value}`))
        .join('');
    return {
      seq: Number(fields.stream_seq),
      prevHash: fields.prev_hash,
      recordHash: record_hash,
      recomputed: createHash('sha256').update(canonical, 'utf8').digest('hex'),
    };
  });
}

function expectLinearChain(chain: Awaited<ReturnType<typeof verifyStream>>, length: number) {
  expect(chain.map((link) => link.seq)).toEqual(Array.from({ length }, (_, index) => index + 1));
  chain.forEach((link, index) => {
    expect(link.recomputed).toBe(link.recordHash);
    expect(link.prevHash).toBe(index === 0 ? null : chain[index - 1]!.recordHash);
  });
}

describe('ingress attestation hash chain', () => {
  it('INV-ATT-HASH-CHAIN: each record links to the previous record_hash of its stream, and the hash is recomputable', async () => {
    const stream = newStream();
    const first = await attest(as.symphony_ingest, stream);
    const second = await attest(as.symphony_ingest, stream);
    const third = await attest(as.symphony_ingest, stream);
    expect([first.prev_hash, second.prev_hash, third.prev_hash]).toEqual([
      null,
      first.record_hash,
      second.record_hash,
    ]);
    expectLinearChain(await verifyStream(stream), 3);

    // Streams are independent chains, each with its own genesis.
    const other = await attest(as.symphony_ingest, newStream());
    expect(other).toMatchObject({ stream_seq: '1', prev_hash: null });
  });

  it('INV-ATT-HASH-CHAIN: an insert whose prev_hash is not the head of its stream is refused with P7301', async () => {
    const stream = newStream();
    // A first record must be a genesis.
    await expectSqlState(insertDirect(db.owner, stream, 'f'.repeat(64)), 'P7301');
    const genesis = await attest(db.owner, stream);
    const head = await attest(db.owner, stream);
    // Linking to an older record, a second genesis, or a made-up hash would fork or break the chain.
    for (const prevHash of [genesis.record_hash, null, 'e'.repeat(64)]) {
      const error = await expectSqlState(insertDirect(db.owner, stream, prevHash), 'P7301');
      expect(error.message).toMatch(/^INV-ATT-HASH-CHAIN:/);
    }
    // The position is assigned by the database, never chosen by the writer.
    await expectSqlState(
      insertDirect(db.owner, stream, head.record_hash, { stream_seq: 7 }),
      'P7301',
    );
    expectLinearChain(await verifyStream(stream), 2);
  });

  it('INV-ATT-NO-FORK: of two writers extending the same head at once, the second is refused with P7301', async () => {
    const stream = newStream();
    const head = await attest(db.owner, stream);
    const [first, second] = [await db.connect(), await db.connect()];
    try {
      await first.query('BEGIN');
      await second.query('BEGIN');
      await insertDirect(first, stream, head.record_hash);
      // The second writer read the same head; its insert waits on the stream lock...
      const pid = await backendPid(second);
      const secondInsert = insertDirect(second, stream, head.record_hash);
      const refused = expectSqlState(secondInsert, 'P7301');
      await waitUntilBlockedOnLock(db.owner, pid);
      // ...and once the first commits, the head it named is no longer the head.
      await first.query('COMMIT');
      await refused;
      await second.query('ROLLBACK');
    } finally {
      await Promise.all([first.end(), second.end()]);
    }
    expectLinearChain(await verifyStream(stream), 2);
  });

  it('INV-ATT-NO-FORK: eight concurrent writers through record_ingress_attestation build one linear chain', async () => {
    const stream = newStream();
    const writers = await Promise.all(Array.from({ length: 8 }, () => db.connect()));
    try {
      await Promise.all(
        writers.map(async (writer) => {
          for (let n = 0; n < 10; n += 1) await attest(writer, stream);
        }),
      );
    } finally {
      await Promise.all(writers.map((writer) => writer.end()));
    }
    expectLinearChain(await verifyStream(stream), 80);
  });

  it('INV-ATT-NO-FORK: a REPEATABLE READ writer whose snapshot predates the head cannot fork the stream (23505)', async () => {
    const stream = newStream();
    await attest(db.owner, stream);
    const stale = await db.connect();
    try {
      await stale.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      await stale.query('SELECT count(*) FROM public.ingress_attestations');
      await attest(db.owner, stream);
      // Its snapshot still shows record 1 as the head; the constraint sees record 2.
      await expectSqlState(attest(stale, stream), '23505');
      await stale.query('ROLLBACK');
    } finally {
      await stale.end();
    }
    expectLinearChain(await verifyStream(stream), 2);
  });

  it('INV-ATT-DB-HASH: a supplied record_hash other than the computed one is refused with P7302', async () => {
    const stream = newStream();
    const error = await expectSqlState(
      insertDirect(db.owner, stream, null, { record_hash: 'a'.repeat(64) }),
      'P7302',
    );
    expect(error.message).toMatch(/^INV-ATT-DB-HASH:/);
  });
});

describe('ingress attestation records', () => {
  it('INV-ATT-APPEND-ONLY: UPDATE, DELETE and TRUNCATE of attestations are refused with P0001, even for the owner', async () => {
    const stream = newStream();
    await attest(db.owner, stream);
    for (const statement of [
      "UPDATE public.ingress_attestations SET decision = 'REJECTED', reason_code = 'X' WHERE stream_id = $1",
      'DELETE FROM public.ingress_attestations WHERE stream_id = $1',
    ]) {
      const error = await expectSqlState(db.owner.query(statement, [stream]), 'P0001');
      expect(error.message).toMatch(/^INV-ATT-APPEND-ONLY:/);
    }
    await expectSqlState(db.owner.query('TRUNCATE public.ingress_attestations'), 'P0001');
    expectLinearChain(await verifyStream(stream), 1);
  });

  it('INV-ATT-FORMAT: malformed hashes and a rejection without a reason are refused with 23514', async () => {
    const stream = newStream();
    const record = (
      payloadSha256: string,
      certFingerprint: string | null,
      decision: string,
      reason: string | null,
    ) =>
      db.owner.query(
        `SELECT * FROM public.record_ingress_attestation(
           $1, 'req', 'instr', 'participant', now(), $2, 'MTLS', $3, NULL, NULL, $4, $5)`,
        [stream, payloadSha256, certFingerprint, decision, reason],
      );
    await expectSqlState(record(PAYLOAD_SHA256.toUpperCase(), null, 'ACCEPTED', null), '23514');
    await expectSqlState(record('not-a-hash', null, 'ACCEPTED', null), '23514');
    await expectSqlState(record(PAYLOAD_SHA256, 'AB:CD', 'ACCEPTED', null), '23514');
    await expectSqlState(record(PAYLOAD_SHA256, null, 'REJECTED', null), '23514');
    await expectSqlState(record(PAYLOAD_SHA256, null, 'MAYBE', 'X'), '23514');
  });
});

describe('ingress attestation role boundaries', () => {
  it('INV-ATT-GRANTS: ingest records through the function but cannot read or write the table directly', async () => {
    const stream = newStream();
    await attest(as.symphony_ingest, stream);
    await expectSqlState(insertDirect(as.symphony_ingest, stream, null), '42501');
    await expectSqlState(
      as.symphony_ingest.query('SELECT * FROM public.ingress_attestations'),
      '42501',
    );
    await expectSqlState(
      as.symphony_ingest.query("DELETE FROM public.ingress_attestations WHERE stream_id = 'x'"),
      '42501',
    );
  });

  it('INV-ATT-GRANTS: readonly and auditor read attestations; no role but ingest can record one', async () => {
    for (const reader of ['symphony_readonly', 'symphony_auditor'] as const) {
      await as[reader].query('SELECT * FROM public.ingress_attestations');
      await expectSqlState(insertDirect(as[reader], newStream(), null), '42501');
    }
    for (const role of [
      'symphony_executor',
      'symphony_control',
      'symphony_readonly',
      'symphony_auditor',
    ] as const) {
      await expectSqlState(attest(as[role], newStream()), '42501');
    }
    for (const role of ['symphony_executor', 'symphony_control'] as const) {
      await expectSqlState(as[role].query('SELECT * FROM public.ingress_attestations'), '42501');
    }
  });
});
