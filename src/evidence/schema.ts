import { readFile } from 'node:fs/promises';
import type { Queryable } from '../db/pool.ts';
import { renderSchemaSnapshot, schemaFingerprint } from '../db/migrate/snapshot.ts';

/** One line of the catalog rendering that the live database and the committed snapshot disagree on. */
export interface SchemaDifference {
  /** The snapshot section, e.g. "functions" or "table privileges". */
  section: string;
  /** `database`: the live catalog has the line and the snapshot does not; `snapshot`: the reverse. */
  onlyIn: 'database' | 'snapshot';
  line: string;
}

export interface SchemaEvidence {
  /** sha256 of the live catalog rendered as `schema snapshot` renders it. */
  liveFingerprint: string;
  /** sha256 of the committed schema/snapshot.txt. */
  committedFingerprint: string;
  equal: boolean;
  differences: SchemaDifference[];
}

/** Lines per `## section` of a rendering; the comment header belongs to no section. */
function sections(rendering: string): Map<string, string[]> {
  const result = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const line of rendering.split('\n')) {
    if (line.startsWith('## ')) {
      current = [];
      result.set(line.slice(3), current);
    } else if (current && line !== '') {
      current.push(line);
    }
  }
  return result;
}

/**
 * Line-level differences between two renderings, section by section: every object, column,
 * function body hash or grant that is in one and not the other, so a drift is named rather
 * than reported as a changed hash.
 */
export function diffRenderings(committed: string, live: string): SchemaDifference[] {
  const before = sections(committed);
  const after = sections(live);
  const names = [...new Set([...before.keys(), ...after.keys()])];
  return names.flatMap((section) => {
    const old = new Set(before.get(section) ?? []);
    const now = new Set(after.get(section) ?? []);
    return [
      ...[...now]
        .filter((line) => !old.has(line))
        .map((line) => ({ section, onlyIn: 'database' as const, line })),
      ...[...old]
        .filter((line) => !now.has(line))
        .map((line) => ({ section, onlyIn: 'snapshot' as const, line })),
    ];
  });
}

/**
 * Renders the connected database's catalog with the renderer that wrote schema/snapshot.txt
 * (the same queries, so equal schemas give equal bytes) and compares it with the file.
 */
export async function schemaEvidence(db: Queryable, snapshotFile: string): Promise<SchemaEvidence> {
  const live = await renderSchemaSnapshot(db);
  const committed = await readFile(snapshotFile, 'utf8');
  const liveFingerprint = schemaFingerprint(live);
  const committedFingerprint = schemaFingerprint(committed);
  const differences = diffRenderings(committed, live);
  const equal = liveFingerprint === committedFingerprint;
  if (!equal && differences.length === 0) {
    // Same lines, other bytes (order or the header): still not the committed schema.
    differences.push({
      section: 'layout',
      onlyIn: 'database',
      line: 'the rendering differs in order or header only',
    });
  }
  return { liveFingerprint, committedFingerprint, equal, differences };
}
