import { describe, expect, it } from 'vitest';
import { checkPrivilegeMatrix, readPrivilegeMatrix } from '../../src/db/privilege-matrix.ts';
import { freshDatabase } from '../support/database.ts';
import { rolledBackOn } from '../support/transactions.ts';

const db = await freshDatabase();

const CLAIM = 'claim_outbox_batch(integer, text, integer, text[])';

describe('the declared privilege matrix (policy/privileges.json)', () => {
  it('INV-PRIV-MATRIX: after migrate, the live catalog grants exactly the declared matrix, PUBLIC included', async () => {
    const matrix = await readPrivilegeMatrix();
    // Guard against a vacuous pass: the file declares the runtime grants and the owner.
    expect(matrix.owner).toBe('symphony_owner');
    expect(matrix.functions[CLAIM]).toEqual({ symphony_executor: ['EXECUTE'] });
    expect(matrix.database).toEqual({ PUBLIC: ['CONNECT'] });
    expect(await checkPrivilegeMatrix(db.owner)).toEqual({ undeclared: [], missing: [] });
  });

  it('INV-PRIV-MATRIX: any grant not declared, any declared grant missing, a foreign owner or a large object is reported', async () => {
    const report = await rolledBackOn(db.owner, async (client) => {
      const { rows } = await client.query<{ me: string }>('SELECT current_user AS me');
      await client.query('GRANT SELECT ON public.outbox_limits TO symphony_ingest');
      await client.query(
        'GRANT SELECT (lease_token) ON public.payment_outbox_pending TO symphony_readonly',
      );
      await client.query(`REVOKE EXECUTE ON FUNCTION public.${CLAIM} FROM symphony_executor`);
      await client.query(
        `DO $$ BEGIN EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO PUBLIC', current_database()); END $$`,
      );
      await client.query('GRANT EXECUTE ON FUNCTION pg_catalog.lo_create(oid) TO PUBLIC');
      await client.query('ALTER TABLE public.outbox_pauses OWNER TO CURRENT_USER');
      const { rows: lo } = await client.query<{ oid: number }>('SELECT lo_create(0) AS oid');
      return { me: rows[0]!.me, lo: lo[0]!.oid, report: await checkPrivilegeMatrix(client) };
    });
    expect(report.report).toEqual({
      undeclared: [
        'database: PUBLIC TEMPORARY',
        'function pg_catalog.lo_create(oid): PUBLIC EXECUTE',
        `large object ${report.lo}: owned by ${report.me}`,
        'column public.payment_outbox_pending.lease_token: symphony_readonly SELECT',
        'table public.outbox_limits: symphony_ingest SELECT',
        `table public.outbox_pauses: owned by ${report.me}`,
      ].sort(),
      missing: [
        `function public.${CLAIM}: symphony_executor EXECUTE`,
        'table public.outbox_pauses: owned by symphony_owner',
      ],
    });
  });
});
