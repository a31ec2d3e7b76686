import type pg from 'pg';
import { claimOutboxBatch, completeOutboxBatch, type Completion } from '../../src/db/outbox.ts';

/**
 * Runs `action` on `client` (a superuser connection: auto_explain must be loaded) in one
 * transaction that is rolled back, and returns the JSON plan of every statement it ran, the
 * statements nested in functions and triggers included.
 */
export async function explainedPlans(
  client: pg.Client,
  action: () => Promise<void>,
): Promise<string[]> {
  const plans: string[] = [];
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
    await action();
  } finally {
    await client.query('ROLLBACK');
    client.off('notice', collect);
  }
  return plans;
}

export interface ClaimPlans {
  /** The JSON plan (auto_explain) of every statement the claims ran, the nested ones included. */
  plans: string[];
  /** How many items each call claimed. */
  claimed: number[];
}

/**
 * Runs `calls` claims on `client` in one transaction that is rolled back (explainedPlans).
 * Six calls or more cover the custom plans PL/pgSQL makes first and the generic plan it
 * settles on after five.
 */
export async function claimPlans(
  client: pg.Client,
  options: { calls?: number; batchSize?: number; railTypes?: string[] } = {},
): Promise<ClaimPlans> {
  const claimed: number[] = [];
  const plans = await explainedPlans(client, async () => {
    for (let call = 0; call < (options.calls ?? 6); call += 1) {
      const items = await claimOutboxBatch(client, {
        batchSize: options.batchSize ?? 256,
        workerId: 'plan-probe',
        leaseSeconds: 30,
        railTypes: options.railTypes ?? ['sandbox'],
      });
      claimed.push(items.length);
    }
  });
  return { plans, claimed };
}

export interface CompletionPlans {
  /** The JSON plan (auto_explain) of every statement the completions ran, nested ones included. */
  plans: string[];
  /** How many outcomes each call recorded (not lease_lost). */
  recorded: number[];
}

/**
 * Records each batch of `batches` with one complete_outbox_batch call on `client`, in one
 * transaction that is rolled back (explainedPlans): six batches or more cover the custom
 * plans and the generic one.
 */
export async function completionPlans(
  client: pg.Client,
  workerId: string,
  batches: readonly (readonly Completion[])[],
): Promise<CompletionPlans> {
  const recorded: number[] = [];
  const plans = await explainedPlans(client, async () => {
    for (const batch of batches) {
      const results = await completeOutboxBatch(client, workerId, batch);
      recorded.push(results.filter((result) => !result.leaseLost).length);
    }
  });
  return { plans, recorded };
}

/** The statements inside `functionName`, without the call itself. */
export const nestedPlans = (plans: readonly string[], functionName = 'claim_outbox_batch') =>
  plans.filter((plan) => !plan.includes(`${functionName}(`));

/** A plan that reads the queue or the item record whole instead of through an index. */
export const readsWhole = (plan: string) =>
  /"Node Type": "(Seq Scan|Bitmap Heap Scan)"[^{}]*"Relation Name": "payment_outbox_(pending|items)"/.test(
    plan,
  );

/**
 * A plan that reads the queue or the item record by a sequential scan. Narrower than
 * readsWhole, which also counts every bitmap scan: here a bitmap scan driven by an index (a
 * key lookup among 0020's grandfathered re-users, say) is a lookup, not a whole read.
 */
export const scansWhole = (plan: string) =>
  /"Node Type": "Seq Scan"[^{}]*"Relation Name": "payment_outbox_(pending|items)"/.test(plan);

/** The claim's pick of due ids, planned as a sort of the due rows instead of the index order. */
export const sortsDueRows = (plan: string) =>
  plan.includes('ORDER BY d.next_attempt_at') && plan.includes('"Node Type": "Sort"');
