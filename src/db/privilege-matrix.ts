import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Queryable } from './pool.ts';

/** The declared privilege matrix shipped with the package. */
export const PRIVILEGE_MATRIX_FILE = fileURLToPath(
  new URL('../../policy/privileges.json', import.meta.url),
);

/** role (or PUBLIC) → privileges, as PostgreSQL names them (SELECT, EXECUTE, USAGE, …). */
type Grants = Record<string, string[]>;

/**
 * The declared matrix: every privilege any role (PUBLIC included) holds on the schema's
 * objects, the database and large objects, besides what an object's owner holds by
 * owning it. Keys are object names without the schema (it is always public), except
 * `catalogFunctions`: the pg_catalog functions whose PUBLIC grant matters here.
 */
export interface PrivilegeMatrix {
  /** What the file is, for its readers. */
  about?: string;
  owner: string;
  database: Grants;
  schema: Grants;
  tables: Record<string, Grants>;
  columns: Record<string, Grants>;
  sequences: Record<string, Grants>;
  functions: Record<string, Grants>;
  types: Record<string, Grants>;
  catalogFunctions: Record<string, Grants>;
  largeObjects: Record<string, Grants>;
}

export interface PrivilegeMatrixReport {
  /** Held in the live catalog, not declared (one line each, e.g. `table public.x: PUBLIC SELECT`). */
  undeclared: string[];
  /** Declared, not held. */
  missing: string[];
}

const KINDS = {
  tables: 'table',
  columns: 'column',
  sequences: 'sequence',
  functions: 'function',
  types: 'type',
  catalogFunctions: 'function',
  largeObjects: 'large object',
} as const;

const QUALIFIER = {
  tables: 'public.',
  columns: 'public.',
  sequences: 'public.',
  functions: 'public.',
  types: 'public.',
  catalogFunctions: 'pg_catalog.',
  largeObjects: '',
} as const;

function grantLines(object: string, grants: Grants): string[] {
  return Object.entries(grants).flatMap(([role, privileges]) =>
    privileges.map((privilege) => `${object}: ${role} ${privilege}`),
  );
}

/** The declared matrix as one line per (object, role, privilege), plus one per owned object. */
export function declaredPrivileges(matrix: PrivilegeMatrix): string[] {
  const lines = [
    ...grantLines('database', matrix.database),
    ...grantLines('schema public', matrix.schema),
  ];
  for (const group of Object.keys(KINDS) as (keyof typeof KINDS)[]) {
    for (const [name, grants] of Object.entries(matrix[group])) {
      lines.push(...grantLines(`${KINDS[group]} ${QUALIFIER[group]}${name}`, grants));
    }
  }
  // Every object of the schema is owned by the declared owner (columns have no owner).
  for (const group of ['tables', 'sequences', 'functions', 'types'] as const) {
    for (const name of Object.keys(matrix[group])) {
      lines.push(`${KINDS[group]} ${QUALIFIER[group]}${name}: owned by ${matrix.owner}`);
    }
  }
  return lines.sort();
}

/**
 * Every privilege held in the live catalog, in the same one-line form: grants of tables,
 * views, sequences, columns, functions and stand-alone types of schema public (and their
 * owner), of schema public itself, of this database, of the watched pg_catalog functions
 * and of every large object (each also as `owned by`, so any large object at all shows).
 * What an object's owner holds by owning it is left out; a NULL ACL counts as
 * PostgreSQL's default for the object kind (acldefault).
 */
export async function livePrivileges(
  client: Queryable,
  catalogFunctions: string[],
): Promise<string[]> {
  const { rows } = await client.query<{ line: string }>(
    `WITH
     fn AS (
       SELECT p.oid, n.nspname, p.proowner, p.proacl,
              p.proname || '(' || coalesce((
                SELECT string_agg(CASE WHEN tn.nspname = 'pg_catalog' THEN format_type(t.oid, NULL)
                                       ELSE tn.nspname || '.' || t.typname END, ', ' ORDER BY a.ord)
                  FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(typ, ord)
                  JOIN pg_catalog.pg_type t ON t.oid = a.typ
                  JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace), '') || ')' AS signature
         FROM pg_catalog.pg_proc p
         JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname IN ('public', 'pg_catalog')
     ),
     objects (kind, name, owner, acl) AS (
       SELECT 'database', NULL::text, d.datdba, coalesce(d.datacl, acldefault('d', d.datdba))
         FROM pg_catalog.pg_database d WHERE d.datname = current_database()
       UNION ALL
       SELECT 'schema', 'public', n.nspowner, coalesce(n.nspacl, acldefault('n', n.nspowner))
         FROM pg_catalog.pg_namespace n WHERE n.nspname = 'public'
       UNION ALL
       SELECT CASE WHEN c.relkind = 'S' THEN 'sequence' ELSE 'table' END,
              'public.' || c.relname, c.relowner,
              coalesce(c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner))
         FROM pg_catalog.pg_class c
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
       UNION ALL
       SELECT 'column', 'public.' || c.relname || '.' || a.attname, c.relowner, a.attacl
         FROM pg_catalog.pg_attribute a
         JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND a.attnum > 0 AND NOT a.attisdropped AND a.attacl IS NOT NULL
       UNION ALL
       SELECT 'function', fn.nspname || '.' || fn.signature, fn.proowner,
              coalesce(fn.proacl, acldefault('f', fn.proowner))
         FROM fn
        WHERE fn.nspname = 'public' OR fn.signature = ANY ($1::text[])
       UNION ALL
       SELECT 'type', 'public.' || t.typname, t.typowner, coalesce(t.typacl, acldefault('T', t.typowner))
         FROM pg_catalog.pg_type t
        WHERE t.typnamespace = 'public'::regnamespace AND t.typtype IN ('e', 'd', 'r', 'c')
          AND (t.typrelid = 0 OR (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid) = 'c')
       UNION ALL
       SELECT 'large object', m.oid::text, m.lomowner, coalesce(m.lomacl, acldefault('L', m.lomowner))
         FROM pg_catalog.pg_largeobject_metadata m
     ),
     grants AS (
       SELECT o.kind, o.name, o.owner, g.grantee, g.privilege_type, g.is_grantable
         FROM objects o CROSS JOIN LATERAL aclexplode(o.acl) g
     )
     SELECT concat_ws(' ', g.kind, g.name) || ': '
            || CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(g.grantee) END
            || ' ' || g.privilege_type || CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END AS line
       FROM grants g
      WHERE g.grantee <> g.owner
     UNION ALL
     SELECT concat_ws(' ', o.kind, o.name) || ': owned by ' || pg_get_userbyid(o.owner)
       FROM objects o
      WHERE (o.kind IN ('table', 'sequence', 'function', 'type') AND o.name LIKE 'public.%')
         OR o.kind = 'large object'`,
    [catalogFunctions],
  );
  return rows.map((row) => row.line).sort();
}

export async function readPrivilegeMatrix(file = PRIVILEGE_MATRIX_FILE): Promise<PrivilegeMatrix> {
  return JSON.parse(await readFile(file, 'utf8')) as PrivilegeMatrix;
}

/**
 * Compares the live catalog with the declared matrix: `undeclared` lists every privilege
 * (or ownership) held but not declared, `missing` every declared one not held. Both empty
 * means the database grants exactly what policy/privileges.json says.
 */
export async function checkPrivilegeMatrix(
  client: Queryable,
  options: { file?: string } = {},
): Promise<PrivilegeMatrixReport> {
  const matrix = await readPrivilegeMatrix(options.file);
  const declared = new Set(declaredPrivileges(matrix));
  const live = new Set(await livePrivileges(client, Object.keys(matrix.catalogFunctions)));
  return {
    undeclared: [...live].filter((line) => !declared.has(line)).sort(),
    missing: [...declared].filter((line) => !live.has(line)).sort(),
  };
}
