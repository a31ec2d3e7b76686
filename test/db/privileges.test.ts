import type pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { freshDatabase } from '../support/database.ts';
import {
  ALL_TABLE_PRIVILEGES,
  connectAsEach,
  OUTBOX_TABLES,
  RUNTIME_ROLES,
  statementNeeding,
  WRITE_PRIVILEGES,
} from '../support/role-boundaries.ts';
import { expectSqlState } from '../support/sqlstate.ts';
import { plantPgTempTypeHijack } from '../support/pg-temp-hijack.ts';
import { rolledBack } from '../support/transactions.ts';

const db = await freshDatabase();
const as = await connectAsEach(db, RUNTIME_ROLES);
// A login role that is a member of nothing: everything it can do, PUBLIC can do.
const nobodyLogin = await db.createLoginRole([]);
const nobody = await nobodyLogin.connect();
afterAll(() => nobody.end());

const ENQUEUE = `SELECT * FROM public.enqueue_payment_outbox($1, 'participant-priv', $2, 'sandbox', '{"amount": 1}'::jsonb)`;
const CLAIM = `SELECT * FROM public.claim_outbox_batch(10, 'priv-worker', 30, '{sandbox}')`;
const COMPLETE_UNKNOWN = `SELECT * FROM public.complete_outbox_attempt(uuidv7(), uuidv7(), 'priv-worker', 'DISPATCHED')`;
const REPAIR = `SELECT * FROM public.repair_expired_leases(10, 'priv-repairer')`;
const BUMP = `SELECT public.bump_participant_outbox_seq('participant-priv')`;
/** Every column of the pending queue but lease_token (0029: readers never see a token). */
const PENDING_READABLE_COLUMNS = `outbox_id, participant_id, sequence_id, rail_type, attempt_count,
  next_attempt_at, claimed_by, lease_expires_at, created_at, updated_at, drive_attempt_base`;

async function expectAllRefused(client: (typeof as)[keyof typeof as], statements: string[]) {
  for (const statement of statements) {
    await expectSqlState(client.query(statement), '42501');
  }
}

async function statementsFor(tables: readonly string[], privileges: typeof ALL_TABLE_PRIVILEGES) {
  const statements: string[] = [];
  for (const table of tables) {
    for (const privilege of privileges)
      statements.push(await statementNeeding(db, privilege, table));
  }
  return statements;
}

/** Manual VACUUM and ANALYZE runs of a table, as the cumulative statistics record them. */
async function maintenanceCounts(table: string): Promise<{ vacuums: number; analyzes: number }> {
  const client = await db.connect();
  try {
    const { rows } = await client.query<{ vacuums: number; analyzes: number }>(
      `SELECT vacuum_count::int AS vacuums, analyze_count::int AS analyzes
         FROM pg_catalog.pg_stat_user_tables WHERE relid = to_regclass($1)`,
      [`public.${table}`],
    );
    if (!rows[0]) throw new Error(`no statistics row for public.${table}`);
    return rows[0];
  } finally {
    await client.end();
  }
}

describe('executor', () => {
  it('INV-PRIV-EXECUTOR-NO-TABLES: executor cannot SELECT, INSERT, UPDATE, DELETE or TRUNCATE any outbox table', async () => {
    await expectAllRefused(
      as.symphony_executor,
      await statementsFor(OUTBOX_TABLES, ALL_TABLE_PRIVILEGES),
    );
  });

  it('INV-PRIV-EXECUTOR-FUNCTIONS: executor cannot enqueue or bump a participant sequence', async () => {
    await expectSqlState(as.symphony_executor.query(ENQUEUE, ['instr-exec', 'key-exec']), '42501');
    await expectSqlState(as.symphony_executor.query(BUMP), '42501');
  });

  it('INV-PRIV-EXECUTOR-FUNCTIONS: executor claims, completes and repairs through the functions', async () => {
    const enqueued = await as.symphony_ingest.query<{ outbox_id: string }>(ENQUEUE, [
      'instr-flow',
      'key-flow',
    ]);
    const claimed = await as.symphony_executor.query<{ outbox_id: string; lease_token: string }>(
      CLAIM,
    );
    // Other tests of this file enqueue too, in whatever order they run: find this test's item.
    const item = claimed.rows.find((row) => row.outbox_id === enqueued.rows[0]?.outbox_id);
    if (!item) throw new Error('the executor did not claim the item ingest just enqueued');

    const completed = await as.symphony_executor.query(
      `SELECT * FROM public.complete_outbox_attempt($1, $2, 'priv-worker', 'DISPATCHED', 'rail-ref-1')`,
      [item.outbox_id, item.lease_token],
    );
    expect(completed.rows).toEqual([{ attempt_no: 1, state: 'DISPATCHED' }]);
    // An unknown item is a lease error, not a privilege error: EXECUTE was granted.
    await expectSqlState(as.symphony_executor.query(COMPLETE_UNKNOWN), 'P7002');
    expect((await as.symphony_executor.query(REPAIR)).rows).toEqual([]);
  });
});

/**
 * What each runtime role may execute, declared here and compared with the catalog: a
 * migration that grants (or drops) a function must change this list, and its review.
 */
const EXECUTABLE_BY: Record<(typeof RUNTIME_ROLES)[number], string[]> = {
  symphony_control: [
    'outbox_active_pauses()',
    'outbox_current_limits()',
    'outbox_failed_items(text,text,integer)',
    'outbox_rail_overview()',
    'pause_dispatch(text,text,text)',
    'redrive_outbox_item(uuid,text)',
    'resume_dispatch(text,text,text)',
    'set_outbox_limit(text,integer,text)',
    'set_rail_settings(text,integer,boolean,integer,integer,integer,text)',
  ],
  symphony_ingest: [
    'enqueue_payment_outbox(text,text,text,text,jsonb,text)',
    'enqueue_payment_outbox_batch(jsonb)',
    'outbox_current_limits()',
    'record_ingress_attestation(text,text,text,text,timestamp with time zone,text,text,text,text,text,text,text)',
  ],
  symphony_executor: [
    'claim_outbox_batch(integer,text,integer,text[])',
    'complete_outbox_attempt(uuid,uuid,text,outbox_attempt_state,text,text,text,text,integer,integer)',
    'complete_outbox_batch(text,jsonb)',
    'outbox_active_pauses()',
    'outbox_current_limits()',
    'outbox_next_attempt_at()',
    'outbox_queue_sample(integer,integer)',
    'outbox_queue_stats()',
    'outbox_queue_stats_by_rail()',
    'outbox_rail_overview()',
    'release_outbox_leases(text,uuid[],uuid[])',
    'repair_expired_leases(integer,text)',
  ],
  symphony_readonly: [
    'outbox_active_pauses()',
    'outbox_current_limits()',
    'outbox_failed_items(text,text,integer)',
    'outbox_queue_stats()',
    'outbox_queue_stats_by_rail()',
    'outbox_rail_overview()',
  ],
  symphony_auditor: [
    'outbox_active_pauses()',
    'outbox_current_limits()',
    'outbox_failed_items(text,text,integer)',
    'outbox_rail_overview()',
  ],
};

async function executableBy(role: string): Promise<string[]> {
  const { rows } = await db.owner.query<{ name: string }>(
    `SELECT oid::regprocedure::text AS name FROM pg_catalog.pg_proc
      WHERE pronamespace = 'public'::regnamespace AND has_function_privilege($1, oid, 'EXECUTE')
      ORDER BY 1`,
    [role],
  );
  return rows.map((row) => row.name);
}

describe('functions each runtime role may execute', () => {
  it('INV-PRIV-EXECUTOR-FUNCTIONS: the executor may execute exactly its declared functions in schema public, and nothing else', async () => {
    expect(await executableBy('symphony_executor')).toEqual(EXECUTABLE_BY.symphony_executor);
  });

  it('INV-PRIV-INGEST-ENQUEUE-ONLY: ingest may execute exactly its declared functions in schema public, and nothing else', async () => {
    expect(await executableBy('symphony_ingest')).toEqual(EXECUTABLE_BY.symphony_ingest);
  });

  it('every other runtime role may execute exactly its declared functions in schema public', async () => {
    for (const role of ['symphony_control', 'symphony_readonly', 'symphony_auditor'] as const) {
      expect({ role, functions: await executableBy(role) }).toEqual({
        role,
        functions: EXECUTABLE_BY[role],
      });
    }
  });
});

describe('ingest', () => {
  it('INV-PRIV-INGEST-ENQUEUE-ONLY: ingest enqueues but cannot claim, complete, repair or bump a sequence', async () => {
    const { rows } = await as.symphony_ingest.query<{ state: string }>(ENQUEUE, [
      'instr-ingest',
      'key-ingest',
    ]);
    expect(rows[0]?.state).toBe('PENDING');
    await expectAllRefused(as.symphony_ingest, [CLAIM, COMPLETE_UNKNOWN, REPAIR, BUMP]);
  });

  it('INV-PRIV-INGEST-ENQUEUE-ONLY: ingest cannot SELECT, INSERT, UPDATE, DELETE or TRUNCATE any outbox table', async () => {
    await expectAllRefused(
      as.symphony_ingest,
      await statementsFor(OUTBOX_TABLES, ALL_TABLE_PRIVILEGES),
    );
  });
});

describe('read plane', () => {
  const readers = ['symphony_readonly', 'symphony_auditor'] as const;

  it('INV-PRIV-READERS: readonly and auditor can SELECT pending and attempts but not participant_outbox_sequences', async () => {
    for (const reader of readers) {
      await as[reader].query(
        `SELECT ${PENDING_READABLE_COLUMNS} FROM public.payment_outbox_pending`,
      );
      await as[reader].query('SELECT * FROM public.payment_outbox_attempts');
      await expectSqlState(
        as[reader].query('SELECT * FROM public.participant_outbox_sequences'),
        '42501',
      );
    }
  });

  it('INV-PRIV-READERS: readonly and auditor cannot write any outbox table nor execute an outbox function', async () => {
    for (const reader of readers) {
      await expectAllRefused(as[reader], await statementsFor(OUTBOX_TABLES, WRITE_PRIVILEGES));
      await expectSqlState(as[reader].query(ENQUEUE, ['instr-reader', 'key-reader']), '42501');
      await expectAllRefused(as[reader], [CLAIM, COMPLETE_UNKNOWN, REPAIR, BUMP]);
    }
  });
});

describe('control', () => {
  it('INV-PRIV-CONTROL-NO-LOCK: control reads the queue but cannot LOCK it (no MAINTAIN), nor VACUUM or REINDEX it', async () => {
    // MAINTAIN carries LOCK TABLE in every mode: a control login took ACCESS EXCLUSIVE on the
    // queue and producers timed out (issue 12). SELECT still allows ACCESS SHARE, which no
    // producer or worker statement waits for. Without MAINTAIN, VACUUM and ANALYZE only warn
    // "skipping"; the proof checks for that warning and that nothing ran (the statistics).
    const queue = [...OUTBOX_TABLES, 'payment_outbox_items'];
    const { rows: grants } = await db.owner.query<{ table: string; maintain: boolean }>(
      `SELECT t AS table, has_table_privilege('symphony_control', 'public.' || t, 'MAINTAIN') AS maintain
         FROM unnest($1::text[]) AS t ORDER BY t`,
      [queue],
    );
    expect(grants).toEqual(queue.sort().map((table) => ({ table, maintain: false })));

    const warnings: string[] = [];
    const collect = (notice: { message?: string }) => warnings.push(notice.message ?? '');
    as.symphony_control.on('notice', collect);
    try {
      for (const table of queue) {
        for (const mode of ['ROW EXCLUSIVE', 'SHARE', 'EXCLUSIVE', 'ACCESS EXCLUSIVE']) {
          await rolledBack(as.symphony_control, (client) =>
            expectSqlState(client.query(`LOCK TABLE public.${table} IN ${mode} MODE`), '42501'),
          );
        }
        const before = await maintenanceCounts(table);
        await as.symphony_control.query(
          table === 'payment_outbox_pending'
            ? `SELECT ${PENDING_READABLE_COLUMNS} FROM public.${table} LIMIT 1`
            : `SELECT * FROM public.${table} LIMIT 1`,
        );
        await as.symphony_control.query(`VACUUM public.${table}`);
        await expectSqlState(as.symphony_control.query(`REINDEX TABLE public.${table}`), '42501');
        expect(await maintenanceCounts(table)).toEqual(before);
      }
    } finally {
      as.symphony_control.off('notice', collect);
    }
    expect(warnings.length).toBe(queue.length);
    expect(warnings.every((warning) => /permission denied to vacuum/.test(warning))).toBe(true);
  });

  it('INV-PRIV-CONTROL-NO-LOCK: control cannot INSERT, UPDATE, DELETE or TRUNCATE an outbox table nor execute an outbox function', async () => {
    await expectAllRefused(
      as.symphony_control,
      await statementsFor(OUTBOX_TABLES, WRITE_PRIVILEGES),
    );
    await expectSqlState(
      as.symphony_control.query(ENQUEUE, ['instr-control', 'key-control']),
      '42501',
    );
    await expectAllRefused(as.symphony_control, [CLAIM, COMPLETE_UNKNOWN, REPAIR, BUMP]);
  });
});

describe('PUBLIC and schema public', () => {
  it('INV-PRIV-PUBLIC-NOTHING: PUBLIC holds no privilege on any relation or routine in schema public', async () => {
    // A NULL acl means the built-in default, which for routines includes EXECUTE for PUBLIC.
    const { rows } = await db.owner.query<{ object: string; privilege: string }>(`
      SELECT c.oid::regclass::text AS object, acl.privilege_type AS privilege
        FROM pg_catalog.pg_class c
       CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault(
               CASE WHEN c.relkind = 'S' THEN 's'::"char" ELSE 'r'::"char" END, c.relowner))) acl
       WHERE c.relnamespace = 'public'::regnamespace AND acl.grantee = 0
      UNION ALL
      SELECT p.oid::regprocedure::text, acl.privilege_type
        FROM pg_catalog.pg_proc p
       CROSS JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) acl
       WHERE p.pronamespace = 'public'::regnamespace AND acl.grantee = 0
      UNION ALL
      SELECT 'schema public', acl.privilege_type
        FROM pg_catalog.pg_namespace n
       CROSS JOIN LATERAL aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) acl
       WHERE n.nspname = 'public' AND acl.grantee = 0`);
    expect(rows).toEqual([]);
  });

  it('INV-PRIV-PUBLIC-NOTHING: a login role that is a member of nothing is refused every table and function', async () => {
    const { rows: relations } = await db.owner.query<{ name: string; sequence: boolean }>(`
      SELECT format('public.%I', relname) AS name, relkind = 'S' AS sequence FROM pg_catalog.pg_class
       WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
       ORDER BY relname`);
    const { rows: routines } = await db.owner.query<{ name: string }>(`
      SELECT oid::regprocedure::text AS name FROM pg_catalog.pg_proc
       WHERE pronamespace = 'public'::regnamespace ORDER BY 1`);
    // Guard against a vacuous pass: the migrations created the outbox and later objects.
    expect(relations.map((r) => r.name)).toEqual(
      expect.arrayContaining(OUTBOX_TABLES.map((table) => `public.${table}`)),
    );
    expect(routines.length).toBeGreaterThan(5);

    const names = (sequences: boolean) =>
      relations.filter((r) => r.sequence === sequences).map((r) => r.name);
    const { rows: granted } = await db.owner.query(
      `SELECT t.name, 'table' AS kind FROM unnest($2::text[]) AS t(name)
        WHERE has_table_privilege($1, t.name, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER, MAINTAIN')
           OR has_any_column_privilege($1, t.name, 'SELECT, INSERT, UPDATE, REFERENCES')
       UNION ALL
       SELECT s.name, 'sequence' FROM unnest($3::text[]) AS s(name)
        WHERE has_sequence_privilege($1, s.name, 'USAGE, SELECT, UPDATE')
       UNION ALL
       SELECT f.name, 'routine' FROM unnest($4::text[]) AS f(name)
        WHERE has_function_privilege($1, f.name, 'EXECUTE')
       UNION ALL
       SELECT 'public', 'schema' WHERE has_schema_privilege($1, 'public', 'USAGE, CREATE')`,
      [nobodyLogin.name, names(false), names(true), routines.map((r) => r.name)],
    );
    expect(granted).toEqual([]);

    for (const { name } of relations) {
      await expectSqlState(nobody.query(`SELECT 1 FROM ${name} LIMIT 1`), '42501');
    }
    await expectSqlState(nobody.query(CLAIM), '42501');
    await expectSqlState(nobody.query(ENQUEUE, ['instr-nobody', 'key-nobody']), '42501');
  });

  it('INV-PRIV-PUBLIC-NOTHING: tables and functions the owner creates later start with no PUBLIC access', async () => {
    const owner = await db.connect();
    try {
      await owner.query('BEGIN');
      await owner.query('CREATE TABLE public.default_privilege_probe (id int)');
      await owner.query(
        'CREATE FUNCTION public.default_privilege_probe() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$',
      );
      const { rows } = await owner.query(
        `SELECT has_table_privilege($1, 'public.default_privilege_probe', 'SELECT, INSERT') AS table_access,
                has_function_privilege($1, 'public.default_privilege_probe()', 'EXECUTE') AS function_access`,
        [nobodyLogin.name],
      );
      expect(rows).toEqual([{ table_access: false, function_access: false }]);
    } finally {
      await owner.query('ROLLBACK');
      await owner.end();
    }
  });

  it('INV-PRIV-NO-CREATE: no runtime role and no unprivileged login can CREATE in schema public', async () => {
    for (const role of RUNTIME_ROLES) {
      await expectSqlState(as[role].query('CREATE TABLE public.intruder (id int)'), '42501');
      await expectSqlState(
        as[role].query(
          'CREATE FUNCTION public.intruder() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$',
        ),
        '42501',
      );
    }
    await expectSqlState(nobody.query('CREATE TABLE public.intruder (id int)'), '42501');

    // Catalog: of every non-superuser role in the cluster, only the schema's owner
    // (pg_database_owner, i.e. the database owner) may create in it.
    const { rows } = await db.owner.query<{ rolname: string }>(`
      SELECT r.rolname FROM pg_catalog.pg_roles r, pg_catalog.pg_namespace n
       WHERE n.nspname = 'public' AND NOT r.rolsuper
         AND NOT pg_has_role(r.oid, n.nspowner, 'USAGE')
         AND has_schema_privilege(r.oid, n.oid, 'CREATE')`);
    expect(rows).toEqual([]);
  });
});

describe('security definer functions', () => {
  it('INV-PRIV-DEFINER-SEARCH-PATH: every function in schema public pins search_path to pg_catalog, public, pg_temp (pg_temp last)', async () => {
    const { rows } = await db.owner.query<{ name: string; config: string[] | null }>(`
      SELECT oid::regprocedure::text AS name, proconfig AS config FROM pg_catalog.pg_proc
       WHERE pronamespace = 'public'::regnamespace ORDER BY 1`);
    expect(rows.map((row) => row.name)).toEqual(
      expect.arrayContaining([
        'enqueue_payment_outbox(text,text,text,text,jsonb,text)',
        'claim_outbox_batch(integer,text,integer,text[])',
        'repair_expired_leases(integer,text)',
      ]),
    );
    const unpinned = rows.filter(
      (row) => !(row.config ?? []).includes('search_path=pg_catalog, public, pg_temp'),
    );
    expect(unpinned).toEqual([]);
  });

  describe('a runtime role that shadows text and uuid in pg_temp', () => {
    // Temporary objects live as long as the session: each test gets a session of its own.
    const sessions: pg.Client[] = [];
    afterAll(() => Promise.all(sessions.map((session) => session.end())));
    // Since 0026 no runtime role may create temporary objects, so the attack cannot even
    // start. To prove the second line of defence (the pinned search_path), the login is
    // given TEMP of its own, as an operator might by mistake: it plants the types, then
    // acts as the role.
    async function hijackedSessionAs(role: string) {
      const login = await db.createLoginRole([role], { sessionRole: null });
      await db.owner.query(`GRANT TEMPORARY ON DATABASE ${db.name} TO ${login.name}`);
      const client = await login.connect();
      sessions.push(client);
      await plantPgTempTypeHijack(client);
      await client.query(`SET ROLE ${role}`);
      return client;
    }

    it('INV-PRIV-DEFINER-SEARCH-PATH: executor functions still run their own types, not the planted ones (no code runs as the owner)', async () => {
      const executor = await hijackedSessionAs('symphony_executor');
      // Hijacked, these raise the planted P9999 as the owner; pinned, they behave normally.
      await expectSqlState(
        executor.query(
          `SELECT * FROM public.complete_outbox_attempt(uuidv7(), uuidv7(), $1, 'RETRYABLE', NULL, NULL, $2)`,
          ['hijack-worker', 'E1'],
        ),
        'P7002',
      );
      expect(
        (
          await executor.query(`SELECT * FROM public.repair_expired_leases(10, $1)`, [
            'hijack-repairer',
          ])
        ).rows,
      ).toEqual([]);
      const batch = await executor.query(
        `SELECT * FROM public.complete_outbox_batch($1, $2::jsonb)`,
        [
          'hijack-worker',
          JSON.stringify([
            {
              outbox_id: '00000000-0000-7000-8000-000000000000',
              lease_token: '00000000-0000-7000-8000-000000000001',
              state: 'DISPATCHED',
            },
          ]),
        ],
      );
      expect(batch.rows.map((row: { lease_lost: boolean }) => row.lease_lost)).toEqual([true]);
    });

    it('INV-PRIV-DEFINER-SEARCH-PATH: ingest functions still run their own types, not the planted ones (no code runs as the owner)', async () => {
      const ingest = await hijackedSessionAs('symphony_ingest');
      const single = await ingest.query<{ state: string }>(
        `SELECT * FROM public.enqueue_payment_outbox($1, 'participant-hijack', $2, 'sandbox', '{"amount": 1}'::jsonb)`,
        ['instr-hijack', 'key-hijack'],
      );
      expect(single.rows.map((row) => row.state)).toEqual(['PENDING']);
      const batch = await ingest.query<{ state: string }>(
        `SELECT * FROM public.enqueue_payment_outbox_batch($1::jsonb)`,
        [
          JSON.stringify([
            {
              instruction_id: 'instr-hijack-b',
              participant_id: 'participant-hijack',
              idempotency_key: 'key-hijack-b',
              rail_type: 'sandbox',
              payload: { amount: 2 },
            },
          ]),
        ],
      );
      expect(batch.rows.map((row) => row.state)).toEqual(['PENDING']);
    });
  });
});
