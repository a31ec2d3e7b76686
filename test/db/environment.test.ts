import { describe, expect, it } from 'vitest';
import { freshDatabase } from '../support/database.ts';
import { RUNTIME_ROLES } from '../support/role-boundaries.ts';
import { expectSqlState } from '../support/sqlstate.ts';

const db = await freshDatabase();

describe('the PostgreSQL 18 requirement', () => {
  it('the check passes on this server at the 0001 threshold', async () => {
    await db.owner.query('SELECT public.assert_server_version(180000)');
  });

  it('INV-ENV-PG18: the 0001 version check with a threshold above the server refuses with P7001 and says why', async () => {
    const error = await expectSqlState(
      db.owner.query('SELECT public.assert_server_version(190000)'),
      'P7001',
    );
    expect(error.message).toContain('server_version_num >= 190000');
    expect(error.message).toMatch(/but this server is 18\.\d+ \(server_version_num 18\d{4}\)/);
  });

  it('INV-ENV-PG18: 0001 calls the check with 180000 before creating any type or table', async () => {
    const { rows } = await db.owner.query<{ version: string }>(
      `SELECT version FROM public.schema_migrations WHERE version = '0001'`,
    );
    expect(rows).toHaveLength(1);
    const { readFile } = await import('node:fs/promises');
    const sql = await readFile(
      new URL('../../schema/migrations/0001_init.sql', import.meta.url),
      'utf8',
    );
    const call = sql.indexOf('SELECT public.assert_server_version(180000);');
    expect(call).toBeGreaterThan(0);
    expect(sql.indexOf('CREATE TYPE')).toBeGreaterThan(call);
    expect(sql.indexOf('CREATE TABLE')).toBeGreaterThan(call);
  });
});

describe('ids default to the built-in pg_catalog.uuidv7()', () => {
  it('INV-IDS-UUIDV7: id defaults call uuidv7() and no public.uuidv7 shadows it', async () => {
    const { rows } = await db.owner.query<{ column: string; definition: string }>(
      `SELECT c.relname || '.' || a.attname AS column, pg_get_expr(d.adbin, d.adrelid) AS definition
         FROM pg_attrdef d
         JOIN pg_class c ON c.oid = d.adrelid
         JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
        WHERE (c.relname, a.attname) IN (('payment_outbox_pending', 'outbox_id'), ('payment_outbox_attempts', 'attempt_id'))
        ORDER BY 1`,
    );
    expect(rows).toEqual([
      { column: 'payment_outbox_attempts.attempt_id', definition: 'uuidv7()' },
      { column: 'payment_outbox_pending.outbox_id', definition: 'uuidv7()' },
    ]);
    const { rows: shadows } = await db.owner.query(
      `SELECT p.oid FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE p.proname = 'uuidv7' AND n.nspname <> 'pg_catalog'`,
    );
    expect(shadows).toEqual([]);
  });

  it('generated ids are version 7', async () => {
    const { rows } = await db.owner.query<{ version: number }>(
      `SELECT uuid_extract_version(e.outbox_id) AS version
         FROM public.enqueue_payment_outbox('env-i', 'env-p', 'env-k', 'sandbox', '{}') e`,
    );
    expect(rows[0]?.version).toBe(7);
  });
});

describe('schema shape the invariants rely on', () => {
  it('INV-ATTEMPTS-NO-FK: attempts reference only the item record, never pending (terminal outcomes delete pending rows)', async () => {
    const { rows } = await db.owner.query<{ conname: string; target: string }>(
      `SELECT conname, confrelid::regclass::text AS target FROM pg_constraint
        WHERE conrelid = 'public.payment_outbox_attempts'::regclass AND contype = 'f'`,
    );
    // No foreign key at all since 0047: the item is checked per statement by a trigger.
    expect(rows).toEqual([]);
    const { rows: triggers } = await db.owner.query<{ name: string }>(
      `SELECT tgname AS name FROM pg_trigger
        WHERE tgrelid = 'public.payment_outbox_attempts'::regclass AND NOT tgisinternal
          AND tgname = 'trg_attempts_belong_to_item'`,
    );
    expect(triggers).toEqual([{ name: 'trg_attempts_belong_to_item' }]);
  });

  it('INV-FUNC-DEFINER-PINNED: the SECURITY DEFINER functions are exactly the declared ones, each pinned to pg_catalog, public, pg_temp, and every function a runtime role may execute is one of them', async () => {
    // Declared here so that a migration adding or dropping a definer function changes this
    // list (and its review) instead of slipping past a pattern.
    const declared = [
      'bump_participant_outbox_seq(text)',
      'claim_outbox_batch(integer,text,integer,text[])',
      'complete_outbox_attempt(uuid,uuid,text,outbox_attempt_state,text,text,text,text,integer,integer)',
      'complete_outbox_batch(text,jsonb)',
      'enqueue_payment_outbox(text,text,text,text,jsonb,text)',
      'enqueue_payment_outbox_batch(jsonb)',
      'outbox_active_pauses()',
      'outbox_current_limits()',
      'outbox_failed_items(text,text,integer)',
      'outbox_next_attempt_at()',
      'outbox_queue_sample(integer,integer)',
      'outbox_queue_stats()',
      'outbox_queue_stats_by_rail()',
      'outbox_rail_overview()',
      'outbox_retry_ceiling()',
      'pause_dispatch(text,text,text)',
      'record_ingress_attestation(text,text,text,text,timestamp with time zone,text,text,text,text,text,text,text)',
      'redrive_outbox_item(uuid,text)',
      'release_outbox_leases(text,uuid[],uuid[])',
      'repair_expired_leases(integer,text)',
      'resume_dispatch(text,text,text)',
      'set_outbox_limit(text,integer,text)',
      'set_rail_settings(text,integer,boolean,integer,integer,integer,text)',
    ];
    const { rows } = await db.owner.query<{
      name: string;
      definer: boolean;
      config: string[] | null;
      runtime_callable: boolean;
    }>(
      `SELECT p.oid::regprocedure::text AS name, p.prosecdef AS definer, p.proconfig AS config,
              EXISTS (SELECT 1 FROM unnest($1::text[]) AS r(role)
                       WHERE has_function_privilege(r.role, p.oid, 'EXECUTE')) AS runtime_callable
         FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace
        ORDER BY 1`,
      [[...RUNTIME_ROLES]],
    );
    const definers = rows.filter((row) => row.definer);
    expect(definers.map((row) => row.name)).toEqual(declared);
    // search_path pinned, and nothing else but the planner settings a migration gave on
    // purpose (0037, 0040, 0043: they read the queue in index order even without statistics;
    // 0045: the claim plans its statements once per connection).
    const plannerSettings: Record<string, string[]> = {
      'claim_outbox_batch(integer,text,integer,text[])': [
        'enable_sort=off',
        'plan_cache_mode=force_generic_plan',
      ],
      'outbox_next_attempt_at()': ['enable_sort=off'],
      'outbox_queue_sample(integer,integer)': ['enable_sort=off', 'enable_seqscan=off'],
    };
    expect(
      definers
        .filter(
          (row) =>
            row.config?.join(';') !==
            ['search_path=pg_catalog, public, pg_temp', ...(plannerSettings[row.name] ?? [])].join(
              ';',
            ),
        )
        .map((row) => ({ name: row.name, config: row.config })),
    ).toEqual([]);
    expect(rows.filter((row) => row.runtime_callable && !row.definer)).toEqual([]);
  });

  it('payment_outbox_pending carries fillfactor 80 and its own autovacuum settings', async () => {
    const { rows } = await db.owner.query<{ options: string[] }>(
      `SELECT reloptions AS options FROM pg_class WHERE oid = 'public.payment_outbox_pending'::regclass`,
    );
    expect(rows[0]?.options).toContain('fillfactor=80');
    expect(
      rows[0]?.options.some((option) => option.startsWith('autovacuum_vacuum_scale_factor=')),
    ).toBe(true);
  });

  it('the concurrently built lease-expiry index exists and is valid', async () => {
    const { rows } = await db.owner.query<{ valid: boolean }>(
      `SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = 'public.ix_pending_lease_expiry'::regclass`,
    );
    expect(rows).toEqual([{ valid: true }]);
  });
});
