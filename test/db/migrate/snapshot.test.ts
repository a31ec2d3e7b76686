import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import {
  renderSchemaSnapshot,
  schemaFingerprint,
  SNAPSHOT_FILE,
} from '../../../src/db/migrate/snapshot.ts';
import { freshDatabase } from '../../support/database.ts';

describe('schema snapshot', () => {
  it('INV-SCHEMA-SNAPSHOT: the migrations reproduce the committed schema/snapshot.txt exactly', async () => {
    const db = await freshDatabase();
    const rendered = await renderSchemaSnapshot(db.owner);
    const committed = await readFile(SNAPSHOT_FILE, 'utf8');
    // On failure: if the change is intended, run `npm run schema:snapshot` and commit the file.
    expect(rendered, 'schema drift: run `npm run schema:snapshot` if the change is intended').toBe(
      committed,
    );
    expect(schemaFingerprint(rendered)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('renders the same text twice (deterministic)', async () => {
    const db = await freshDatabase();
    expect(await renderSchemaSnapshot(db.owner)).toBe(await renderSchemaSnapshot(db.owner));
  });

  it('covers functions with their body hash, definer flag, pinned search_path and other settings, and grants', async () => {
    const committed = await readFile(SNAPSHOT_FILE, 'utf8');
    expect(committed).toMatch(
      // Every setting a function carries, in order: the claim's planner settings of 0037 and 0045 too.
      /^claim_outbox_batch\(.*security_definer=t config=search_path=pg_catalog, public, pg_temp;enable_sort=off;plan_cache_mode=force_generic_plan body_sha256=[0-9a-f]{64}$/m,
    );
    expect(committed).toMatch(/^claim_outbox_batch\(.*\) symphony_executor EXECUTE$/m);
    expect(committed).not.toMatch(/ PUBLIC /);
  });
});
