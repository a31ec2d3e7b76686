import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The migrations shipped with the package. */
export const MIGRATIONS_DIR = fileURLToPath(
  new URL('../../../schema/migrations/', import.meta.url),
);

/** A file that must run outside a transaction says so on a line of its own. */
export const NO_TRANSACTION_MARKER = '-- symphony:no-transaction';

const FILE_NAME = /^(\d{4,})_([a-z0-9_]+)\.sql$/;

export interface MigrationFile {
  /** Numeric prefix, e.g. "0013"; the ledger's primary key. */
  version: string;
  /** The rest of the name, e.g. "outbox_pending_indexes_concurrently". */
  description: string;
  fileName: string;
  sql: string;
  checksum: string;
  noTransaction: boolean;
}

export function checksumOf(sql: string): string {
  return createHash('sha256').update(sql, 'utf8').digest('hex');
}

export function hasNoTransactionMarker(sql: string): boolean {
  return sql.split('\n').some((line) => line.trim() === NO_TRANSACTION_MARKER);
}

export async function readMigrationFiles(dir: string = MIGRATIONS_DIR): Promise<MigrationFile[]> {
  const names = (await readdir(dir)).filter((name) => name.endsWith('.sql')).sort();
  const files: MigrationFile[] = [];
  const seen = new Map<string, string>();
  for (const fileName of names) {
    const match = FILE_NAME.exec(fileName);
    if (!match) {
      throw new Error(
        `migration file ${fileName} has an invalid name: rename it to NNNN_description.sql ` +
          `(4+ digits, lowercase letters, digits and underscores)`,
      );
    }
    const [, version = '', description = ''] = match;
    const clash = seen.get(version);
    if (clash) {
      throw new Error(
        `migration files ${clash} and ${fileName} share version ${version}: give the newer one the next free number`,
      );
    }
    seen.set(version, fileName);
    const sql = await readFile(path.join(dir, fileName), 'utf8');
    files.push({
      version,
      description,
      fileName,
      sql,
      checksum: checksumOf(sql),
      noTransaction: hasNoTransactionMarker(sql),
    });
  }
  return files;
}
