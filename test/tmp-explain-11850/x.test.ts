import { it } from 'vitest';
import { freshDatabase } from '../support/database.ts';
const db = await freshDatabase();
it('explain', async () => {
  await db.owner.query(`INSERT INTO public.payment_outbox_attempts (attempt_id, outbox_id, instruction_id, participant_id, sequence_id, idempotency_key, rail_type, payload, attempt_no, state)
    SELECT uuidv7(-(g || ' seconds')::interval), uuidv7(), 'i'||g, 'p', g, 'k', 's', '{}', 1, 'RETRYABLE' FROM generate_series(1,200000) g`);
  await db.owner.query('ANALYZE public.payment_outbox_attempts');
  const { rows } = await db.owner.query(`EXPLAIN ANALYZE WITH bound AS (
       SELECT lpad(to_hex(floor(extract(epoch FROM now() - make_interval(secs => 3600)) * 1000)::bigint), 12, '0') AS ms
     )
     SELECT a.state::text AS state, count(*) AS attempts
       FROM public.payment_outbox_attempts a, bound
      WHERE a.attempt_id >= (substr(bound.ms, 1, 8) || '-' || substr(bound.ms, 9, 4) || '-0000-0000-000000000000')::uuid
      GROUP BY a.state`);
  console.log(rows.map((r) => r['QUERY PLAN']).join('\n'));
});
