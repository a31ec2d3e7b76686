import type pg from 'pg';
import { claimOutboxBatch } from '../../src/db/outbox.ts';

export interface ClaimPlans {
  /** The JSON plan (auto_explain) of every statement the claims ran, the nested ones included. */
  plans: string[];
  /** How many items each call claimed. */
  claimed: number[];
}

/**
 * Runs `calls` claims on `client` (a superuser connection: auto_explain must be loaded) in
 * one transaction that is rolled back, and returns the plan of every statement they ran.
 * Six calls or more cover the custom plans PL/pgSQL makes first and the generic plan it
 * settles on after five.
 */
export async function claimPlans(
  client: pg.Client,
  options: { calls?: number; batchSize?: number; railTypes?: string[] } = {},
): Promise<ClaimPlans> {
  const plans: string[] = [];
  const claimed: number[] = [];
  const collect = (notice: { message?: string }) => {
    if (notice.message?.includes('Query Text')) plans.push(notice.message);
  };
  client.on('notice', collect);
  await client.query('BEGIN');
  try {
    await client.query(`LOAD 'auto_explain'`);
    await client.query(`SET LOCAL auto_explain.log_min_duration = 0`);
    await client.query(`SET LOCAL auto_explain.log_nested_statements = on`);
    await client.query(`SET LOCAL auto_explain.log_format = 'json'`);
    await client.query(`SET LOCAL auto_explain.log_level = notice`);
    for (let call = 0; call < (options.calls ?? 6); call += 1) {
      const items = await claimOutboxBatch(client, {
        batchSize: options.batchSize ?? 256,
        workerId: 'plan-probe',
        leaseSeconds: 30,
        railTypes: options.railTypes ?? ['sandbox'],
      });
      claimed.push(items.length);
    }
  } finally {
    await client.query('ROLLBACK');
    client.off('notice', collect);
  }
  return { plans, claimed };
}

/** The statements inside claim_outbox_batch, without the call itself. */
export const nestedPlans = (plans: readonly string[]) =>
  plans.filter((plan) => !plan.includes('claim_outbox_batch('));

/** A plan that reads the queue or the item record whole instead of through an index. */
export const readsWhole = (plan: string) =>
  /"Node Type": "(Seq Scan|Bitmap Heap Scan)"[^{}]*"Relation Name": "payment_outbox_(pending|items)"/.test(
    plan,
  );

/** The claim's pick of due ids, planned as a sort of the due rows instead of the index order. */
export const sortsDueRows = (plan: string) =>
  plan.includes('ORDER BY d.next_attempt_at') && plan.includes('"Node Type": "Sort"');
