import type { MigrationFile } from '../db/migrate/files.ts';
import type { LedgerRow } from '../db/migrate/runner.ts';

/**
 * `applied`: in the ledger with the file's checksum. `edited`: applied, but the file's
 * checksum differs from the one recorded when it ran. `not applied`: a file the ledger does
 * not have. `no file`: applied to the database, but this code has no such file.
 */
export type MigrationState = 'applied' | 'edited' | 'not applied' | 'no file';

export interface MigrationEvidence {
  version: string;
  fileName: string | null;
  fileChecksum: string | null;
  ledgerChecksum: string | null;
  appliedAt: Date | null;
  state: MigrationState;
}

/** Every version in the files or the ledger, in version order, with what each side says. */
export function compareMigrations(
  files: readonly MigrationFile[],
  ledger: ReadonlyMap<string, LedgerRow>,
): MigrationEvidence[] {
  const byVersion = new Map(files.map((file) => [file.version, file]));
  const versions = [...new Set([...byVersion.keys(), ...ledger.keys()])].sort();
  return versions.map((version) => {
    const file = byVersion.get(version);
    const row = ledger.get(version);
    const state: MigrationState = !row
      ? 'not applied'
      : !file
        ? 'no file'
        : row.checksum_sha256 === file.checksum
          ? 'applied'
          : 'edited';
    return {
      version,
      fileName: file?.fileName ?? null,
      fileChecksum: file?.checksum ?? null,
      ledgerChecksum: row?.checksum_sha256 ?? null,
      appliedAt: row?.applied_at ?? null,
      state,
    };
  });
}
