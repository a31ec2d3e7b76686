import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { Queryable } from '../pool.ts';

/** The committed rendering of the catalog after every migration; its sha256 is the schema fingerprint. */
export const SNAPSHOT_FILE = fileURLToPath(
  new URL('../../../schema/snapshot.txt', import.meta.url),
);

/**
 * Each section is one catalog query producing one text line per object, ordered, so the
 * rendering is byte-for-byte deterministic for a given schema. The migrating role's name
 * varies between installations, so privileges held by an object's owner render as <owner>.
 */
const SECTIONS: { title: string; sql: string }[] = [
  {
    title: 'roles',
    sql: `SELECT format('%s login=%s superuser=%s createdb=%s createrole=%s inherit=%s',
                    rolname, rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolinherit)
            FROM pg_catalog.pg_roles WHERE rolname LIKE 'symphony\\_%' ORDER BY 1`,
  },
  {
    title: 'schema privileges',
    sql: `SELECT format('public %s %s%s', CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                          WHEN a.grantee = n.nspowner THEN '<owner>' ELSE a.grantee::regrole::text END,
                    a.privilege_type, CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
            FROM pg_catalog.pg_namespace n, aclexplode(n.nspacl) a
           WHERE n.nspname = 'public' ORDER BY 1`,
  },
  {
    title: 'types',
    sql: `SELECT format('%s enum(%s)', t.typname, string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder))
            FROM pg_catalog.pg_type t JOIN pg_catalog.pg_enum e ON e.enumtypid = t.oid
            JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
           WHERE n.nspname = 'public' GROUP BY t.typname ORDER BY 1`,
  },
  {
    title: 'tables',
    sql: `SELECT format('%s kind=%s options=%s', c.relname, c.relkind, coalesce(array_to_string(c.reloptions, ','), ''))
            FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S') ORDER BY 1`,
  },
  {
    title: 'columns',
    sql: `SELECT format('%s.%s %s%s%s%s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                    CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END,
                    CASE WHEN a.attgenerated = 's' THEN ' GENERATED ' || pg_get_expr(d.adbin, d.adrelid)
                         WHEN d.adbin IS NOT NULL THEN ' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid) ELSE '' END,
                    CASE WHEN a.attidentity::text <> '' THEN ' IDENTITY ' || a.attidentity::text ELSE '' END)
            FROM pg_catalog.pg_attribute a
            JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
           WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm') AND a.attnum > 0 AND NOT a.attisdropped
           ORDER BY c.relname, a.attnum`,
  },
  {
    title: 'constraints',
    sql: `SELECT format('%s %s %s%s', c.relname, k.conname, pg_get_constraintdef(k.oid),
                    CASE WHEN k.condeferrable THEN ' DEFERRABLE' ELSE '' END)
            FROM pg_catalog.pg_constraint k
            JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' ORDER BY c.relname, k.conname`,
  },
  {
    title: 'indexes',
    sql: `SELECT pg_get_indexdef(i.indexrelid) || CASE WHEN i.indisvalid THEN '' ELSE ' INVALID' END
            FROM pg_catalog.pg_index i
            JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' ORDER BY c.relname`,
  },
  {
    title: 'functions',
    sql: `SELECT format('%s(%s) returns %s language=%s volatility=%s security_definer=%s config=%s body_sha256=%s',
                    p.proname, pg_get_function_identity_arguments(p.oid), pg_get_function_result(p.oid),
                    l.lanname, p.provolatile, p.prosecdef, coalesce(array_to_string(p.proconfig, ';'), ''),
                    encode(sha256(convert_to(p.prosrc, 'UTF8')), 'hex'))
            FROM pg_catalog.pg_proc p
            JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
            JOIN pg_catalog.pg_language l ON l.oid = p.prolang
           WHERE n.nspname = 'public' ORDER BY 1`,
  },
  {
    title: 'triggers',
    sql: `SELECT pg_get_triggerdef(t.oid)
            FROM pg_catalog.pg_trigger t
            JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND NOT t.tgisinternal ORDER BY c.relname, t.tgname`,
  },
  {
    title: 'table privileges',
    sql: `SELECT format('%s %s %s', c.relname, CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                          WHEN a.grantee = c.relowner THEN '<owner>' ELSE a.grantee::regrole::text END,
                    string_agg(a.privilege_type, ',' ORDER BY a.privilege_type))
            FROM pg_catalog.pg_class c
            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace,
                 aclexplode(c.relacl) a
           WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
           GROUP BY c.relname, a.grantee, c.relowner ORDER BY 1`,
  },
  {
    title: 'function privileges',
    sql: `SELECT format('%s(%s) %s %s', p.proname, pg_get_function_identity_arguments(p.oid),
                    CASE WHEN a.grantee = 0 THEN 'PUBLIC' WHEN a.grantee = p.proowner THEN '<owner>'
                         ELSE a.grantee::regrole::text END, a.privilege_type)
            FROM pg_catalog.pg_proc p
            JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace,
                 aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
           WHERE n.nspname = 'public' ORDER BY 1`,
  },
];

export async function renderSchemaSnapshot(db: Queryable): Promise<string> {
  const lines = [
    '# symphony-relay schema snapshot: the catalog of schema public after every migration.',
    '# Regenerate with `npm run schema:snapshot`; never edit by hand.',
  ];
  for (const section of SECTIONS) {
    const { rows } = await db.query<Record<string, string>>(section.sql);
    lines.push('', `## ${section.title}`);
    // Each query yields exactly one (unnamed) column: the rendered line.
    for (const row of rows) lines.push(String(Object.values(row)[0]));
  }
  return `${lines.join('\n')}\n`;
}

export function schemaFingerprint(snapshot: string): string {
  return createHash('sha256').update(snapshot, 'utf8').digest('hex');
}
