import pg from 'pg';
import { startEmbeddedPostgres, temporaryDataDir } from './src/embedded/postgres.ts';
import { migrate } from './src/db/migrate/runner.ts';
const server = await startEmbeddedPostgres({ dataDir: temporaryDataDir('bq'), persistent: false });
try {
  const admin = new pg.Client({ connectionString: server.adminUrl });
  await admin.connect();
  await admin.query('CREATE DATABASE s');
  await admin.end();
  const url = server.adminUrl.replace(/\/postgres$/, '/s');
  console.log(await migrate(url, { dir: '/tmp/bq/mig' }).then((r) => JSON.stringify(r).slice(0, 300)));
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  const q = async (sql: string, params: unknown[] = []) => {
    try { const r = await c.query(sql, params); console.log(JSON.stringify(r.rows)); }
    catch (e) { console.log('ERR', (e as any).code, (e as Error).message); }
  };
  const items = [1,2,3,1].map((n) => ({ instruction_id: `i${n}`, participant_id: n % 2 ? 'pA' : 'pB', idempotency_key: `k${n}`, rail_type: 'sandbox', payload: { n } }));
  await q('SELECT * FROM enqueue_payment_outbox_batch($1::jsonb)', [JSON.stringify(items)]);
  await q('SELECT * FROM enqueue_payment_outbox_batch($1::jsonb)', [JSON.stringify([...items, { instruction_id: 'i9', participant_id: 'pA', idempotency_key: 'k9', rail_type: 'sandbox', payload: {} }])]);
  await q('SELECT * FROM enqueue_payment_outbox_batch($1::jsonb)', [JSON.stringify([{ ...items[0], payload: [1] }])]);
  await q('SELECT * FROM enqueue_payment_outbox_batch($1::jsonb)', [JSON.stringify([{ ...items[0], instruction_id: null, idempotency_key: 'zz' }])]);
  await q('SELECT participant_id, sequence_id, instruction_id FROM payment_outbox_pending ORDER BY 1,2');
  const claimed = (await c.query(`SELECT outbox_id, lease_token FROM claim_outbox_batch(10, 'w', 60)`)).rows;
  const outcomes = claimed.map((r, i) => ({ outbox_id: r.outbox_id, lease_token: i === 0 ? r.outbox_id : r.lease_token, state: ['DISPATCHED','RETRYABLE','FAILED','DISPATCHED','DISPATCHED'][i], error_code: 'E', latency_ms: 3, retry_delay_seconds: 5 }));
  outcomes.push({ ...outcomes[3]!, state: 'FAILED' });
  await q(`SELECT * FROM complete_outbox_batch('w', $1::jsonb)`, [JSON.stringify([{ ...outcomes[1], state: 'BOGUS' }])]);
  await q(`SELECT * FROM complete_outbox_batch('w', $1::jsonb)`, [JSON.stringify(outcomes)]);
  await q(`SELECT outbox_id, attempt_no, state, error_code, latency_ms, completed_at IS NOT NULL AS done FROM payment_outbox_attempts`);
  await q(`SELECT outbox_id, attempt_count, claimed_by, next_attempt_at - now() AS delay FROM payment_outbox_pending`);
  await q(`EXPLAIN SELECT * FROM complete_outbox_batch('w', '[]')`);
  await c.end();
} finally {
  await server.stop();
}
