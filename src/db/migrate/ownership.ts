import type pg from 'pg';

/** The NOLOGIN role that owns every object of the schema (migration 0027). */
export const SCHEMA_OWNER = 'symphony_owner';

/**
 * Hands every table, view, sequence, function and type of schema public that the owner
 * does not own yet to symphony_owner. Runs at the end of each migration (in its
 * transaction when it has one), so whatever login ran `migrate` — the compose stack uses
 * the superuser — no object is left owned by it and every SECURITY DEFINER function runs
 * as the owner. A no-op until 0027 has run in this database, and once everything is
 * handed over. Inline SQL on purpose: a stored function the owner could replace would run with
 * the migrating login's rights.
 */
const ASSIGN_SCHEMA_OWNER = `
DO $assign$
DECLARE
  v_owner oid := (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = '${SCHEMA_OWNER}');
  v_object record;
BEGIN
  -- The role is cluster-wide, but this database is handed over only from 0027 on, which
  -- grants the owner USAGE on schema public (its functions could not run without it). The
  -- grant itself is checked: PUBLIC's default USAGE, revoked by 0004, does not count.
  IF v_owner IS NULL OR NOT EXISTS (
       SELECT 1 FROM pg_catalog.pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a
        WHERE n.nspname = 'public' AND a.grantee = v_owner AND a.privilege_type = 'USAGE') THEN
    RETURN;
  END IF;
  FOR v_object IN
    -- Tables, views, materialized views, foreign tables and stand-alone sequences; indexes
    -- and a table's own (identity/serial) sequences follow their table.
    SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                          WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE'
                          ELSE 'TABLE' END AS kind,
           format('%I.%I', n.nspname, c.relname) AS name
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public'
       AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
       AND c.relowner <> v_owner
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                        WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
                          AND d.deptype IN ('a', 'i'))
    UNION ALL
    SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
           p.oid::regprocedure::text
      FROM pg_catalog.pg_proc p
      JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = 'public' AND p.proowner <> v_owner
    UNION ALL
    -- Stand-alone types (enums, domains, composite and range types); a table's row type
    -- and every array type follow their element.
    SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.oid::regtype::text
      FROM pg_catalog.pg_type t
      JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
     WHERE n.nspname = 'public'
       AND t.typowner <> v_owner
       AND t.typtype IN ('e', 'd', 'r', 'c')
       AND (t.typrelid = 0 OR (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid) = 'c')
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                        WHERE d.classid = 'pg_catalog.pg_type'::regclass AND d.objid = t.oid
                          AND d.deptype = 'i')
  LOOP
    EXECUTE format('ALTER %s %s OWNER TO ${SCHEMA_OWNER}', v_object.kind, v_object.name);
  END LOOP;
END
$assign$`;

export async function assignSchemaOwner(client: pg.ClientBase): Promise<void> {
  await client.query(ASSIGN_SCHEMA_OWNER);
}
