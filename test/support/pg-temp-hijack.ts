/**
 * The classic SECURITY DEFINER hijack through the session's temporary schema: pg_temp is
 * searched FIRST for type names unless a function's search_path lists it explicitly, so a
 * role with TEMP on the database (PUBLIC has it by default) can shadow `text` or `uuid`
 * with a domain whose CHECK calls its own function. Inside a SECURITY DEFINER body that
 * CHECK runs as the function's owner.
 */
import type pg from 'pg';

/** SQLSTATE the planted function raises, so a test can tell "hijacked" from any real error. */
export const HIJACKED_SQLSTATE = 'P9999';

/**
 * Plants the hijack in `client`'s own session (temporary objects are per session, so use a
 * client of its own: afterwards even its `'x'::text` resolves to the planted domain).
 */
export async function plantPgTempTypeHijack(client: pg.Client): Promise<void> {
  await client.query(`
    CREATE FUNCTION pg_temp.hijacked(v pg_catalog.text) RETURNS pg_catalog.bool
    LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION 'hijacked: planted code ran as %', current_user USING ERRCODE = '${HIJACKED_SQLSTATE}';
    END
    $$`);
  await client.query(
    `CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (pg_temp.hijacked(VALUE))`,
  );
  await client.query(
    `CREATE DOMAIN pg_temp.uuid AS pg_catalog.uuid CHECK (pg_temp.hijacked(VALUE::pg_catalog.text))`,
  );
}
