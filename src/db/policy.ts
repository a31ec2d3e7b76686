import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Queryable } from './pool.ts';

/** What identifies a policy in policy_versions: its version and the sha256 of its canonical JSON. */
export interface PolicyIdentity {
  version: string;
  checksum: string;
}

export interface SeedResult extends PolicyIdentity {
  /** `already-seeded`: the same version with the same checksum was ACTIVE; nothing changed. */
  outcome: 'seeded' | 'already-seeded';
}

/** Seeding failed closed: nothing was written. */
export class PolicySeedError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PolicySeedError';
  }
}

type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/**
 * JSON with object keys sorted (by UTF-16 code units, as RFC 8785 does) and no whitespace,
 * so the checksum depends on the policy's content, not on how the file was formatted.
 * Only plain JSON values are accepted: anything JSON.stringify would drop or coerce
 * (undefined, functions, NaN, Infinity, bigint, class instances) is an error.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') {
    return JSON.stringify(value);
  }
  if (typeof value === 'number') {
    if (!Number.isFinite(value))
      throw new TypeError(`canonicalJson: ${value} is not a JSON number`);
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) {
    return `[${value.map((item) => canonicalJson(item)).join(',')}]`;
  }
  if (typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) =>
      a < b ? -1 : a > b ? 1 : 0,
    );
    return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonicalJson(item)}`).join(',')}}`;
  }
  throw new TypeError(`canonicalJson: a value of type ${typeof value} is not plain JSON`);
}

export function policyChecksum(policy: JsonValue): string {
  return createHash('sha256').update(canonicalJson(policy), 'utf8').digest('hex');
}

/** Reads and validates a policy file; every problem is a PolicySeedError naming the file. */
export async function readPolicyFile(file: string): Promise<PolicyIdentity> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new PolicySeedError(
      `cannot read policy file ${file}: ${(error as Error).message}. Pass the path of a readable JSON policy file.`,
      { cause: error },
    );
  }
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw new PolicySeedError(
      `policy file ${file} is not valid JSON: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
  if (typeof document !== 'object' || document === null || Array.isArray(document)) {
    throw new PolicySeedError(
      `policy file ${file} must contain a JSON object with a "version" string`,
    );
  }
  const version = (document as Record<string, unknown>).version;
  if (typeof version !== 'string' || version.trim() === '') {
    throw new PolicySeedError(
      `policy file ${file} has no usable "version": it must be a non-empty string (e.g. "2025-01")`,
    );
  }
  return { version, checksum: policyChecksum(document as JsonValue) };
}

/** The ACTIVE policy, or null when none was seeded. Database errors propagate unchanged. */
export async function activePolicy(db: Queryable): Promise<PolicyIdentity | null> {
  const { rows } = await db.query<PolicyIdentity>(
    `SELECT version, checksum FROM public.policy_versions WHERE status = 'ACTIVE'`,
  );
  return rows[0] ?? null;
}

function refuseOtherActive(file: string, wanted: PolicyIdentity, active: PolicyIdentity): never {
  const what =
    active.version === wanted.version
      ? `policy ${active.version} is already ACTIVE with checksum ${active.checksum}, but ${file} hashes to ${wanted.checksum}: ` +
        'a published policy version never changes; give the changed policy a new version'
      : `policy ${active.version} is already ACTIVE; seeding only initialises an empty database and never replaces ` +
        `an ACTIVE policy (wanted ${wanted.version}). Rotate to the new version instead`;
  throw new PolicySeedError(`refusing to seed ${file}: ${what}`);
}

/**
 * Inserts the policy in `file` as the ACTIVE policy of an empty database. Idempotent:
 * when the same version and checksum are already ACTIVE it does nothing. It never mutates
 * an existing row and refuses (PolicySeedError) whenever another policy or another content
 * for this version is already there. Safe to run from several processes at once.
 */
export async function seedPolicy(db: Queryable, options: { file: string }): Promise<SeedResult> {
  const wanted = await readPolicyFile(options.file);
  const matches = (active: PolicyIdentity) =>
    active.version === wanted.version && active.checksum === wanted.checksum;

  try {
    const before = await activePolicy(db);
    if (before) {
      if (matches(before)) return { ...wanted, outcome: 'already-seeded' };
      refuseOtherActive(options.file, wanted, before);
    }

    // DO NOTHING on any unique conflict: a concurrent seeder's ACTIVE row (single-ACTIVE
    // index) or an older row with this version (primary key). Either way, re-read.
    const inserted = await db.query(
      `INSERT INTO public.policy_versions (version, status, checksum)
       VALUES ($1, 'ACTIVE', $2)
       ON CONFLICT DO NOTHING
       RETURNING version`,
      [wanted.version, wanted.checksum],
    );
    if (inserted.rowCount === 1) return { ...wanted, outcome: 'seeded' };

    const after = await activePolicy(db);
    if (after && matches(after)) return { ...wanted, outcome: 'already-seeded' };
    if (after) refuseOtherActive(options.file, wanted, after);
    const { rows } = await db.query<{ status: string }>(
      'SELECT status FROM public.policy_versions WHERE version = $1',
      [wanted.version],
    );
    throw new PolicySeedError(
      `refusing to seed ${options.file}: policy version ${wanted.version} already exists with status ` +
        `${rows[0]?.status ?? 'unknown'}, and a policy never returns to ACTIVE; publish it under a new version`,
    );
  } catch (error) {
    if (error instanceof PolicySeedError) throw error;
    const pgError = error as { message?: string; code?: string };
    throw new PolicySeedError(
      `seeding ${options.file} (version ${wanted.version}) failed in the database: ${pgError.message ?? String(error)}` +
        `${pgError.code ? ` (SQLSTATE ${pgError.code})` : ''}. Nothing was changed; ` +
        'run it as the schema owner or a member of symphony_control, after migrate.',
      { cause: error },
    );
  }
}
