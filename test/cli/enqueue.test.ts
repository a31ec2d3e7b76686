import { truncate } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { MAX_FILE_BYTES, MAX_FILE_ITEMS } from '../../src/cli/enqueue-input.ts';
import { runCli, scratchDirectory } from '../support/cli.ts';
import { freshDatabase } from '../support/database.ts';
import { uniquePrefix } from '../support/outbox-fixtures.ts';

const db = await freshDatabase();
const producer = await db.createLoginRole(['symphony_ingest']);
const files = await scratchDirectory('enqueue');

const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
/** Recognisable in output: a payload value must never be printed. */
const SECRET_ACCOUNT = 'acct-4111-1111-do-not-print';

interface QueuedRow {
  outbox_id: string;
  instruction_id: string;
  participant_id: string;
  sequence_id: string;
  idempotency_key: string;
  rail_type: string;
  payload: Record<string, unknown>;
}

async function queuedRows(instructionPrefix: string): Promise<QueuedRow[]> {
  const { rows } = await db.owner.query<QueuedRow>(
    `SELECT i.outbox_id, i.instruction_id, i.participant_id, i.sequence_id, i.idempotency_key,
            i.rail_type, i.payload
       FROM public.payment_outbox_items i
       JOIN public.payment_outbox_pending p USING (outbox_id)
      WHERE starts_with(i.instruction_id, $1)
      ORDER BY i.participant_id, i.sequence_id`,
    [instructionPrefix],
  );
  return rows;
}

function item(prefix: string, n: number, participant: string) {
  return {
    instructionId: `${prefix}-${n}`,
    participantId: participant,
    idempotencyKey: `${prefix}-key-${n}`,
    railType: 'sandbox',
    payload: { amount: `${n}.00`, currency: 'ZMW', account: SECRET_ACCOUNT },
  };
}

function jsonLines(items: unknown[]): string {
  return items.map((value) => JSON.stringify(value)).join('\n') + '\n';
}

function itemFlags(prefix: string): string[] {
  return [
    'enqueue',
    '--instruction-id',
    `${prefix}-1`,
    '--participant-id',
    `${prefix}-participant`,
    '--idempotency-key',
    `${prefix}-key-1`,
    '--rail-type',
    'sandbox',
    '--payload',
    JSON.stringify({ amount: '12.50', account: SECRET_ACCOUNT }),
  ];
}

describe('symphony-relay enqueue (as symphony_ingest)', () => {
  it('enqueues one item from flags, prints "outbox_id sequence_id state" and never the payload', async () => {
    const prefix = uniquePrefix('cli-one');
    const result = await runCli(itemFlags(prefix), { DATABASE_URL: producer.url });

    expect(result, result.stderr).toMatchObject({ code: 0 });
    expect(result.stdout.trim()).toMatch(new RegExp(`^${UUID} 1 PENDING$`));
    expect(result.stdout + result.stderr).not.toContain(SECRET_ACCOUNT);
    const rows = await queuedRows(prefix);
    expect(rows).toEqual([
      {
        outbox_id: result.stdout.split(' ')[0],
        instruction_id: `${prefix}-1`,
        participant_id: `${prefix}-participant`,
        sequence_id: '1',
        idempotency_key: `${prefix}-key-1`,
        rail_type: 'sandbox',
        payload: { amount: '12.50', account: SECRET_ACCOUNT },
      },
    ]);
  });

  it('repeating the same item prints the same outbox id and says it was already present', async () => {
    const prefix = uniquePrefix('cli-again');
    const first = await runCli(itemFlags(prefix), { DATABASE_URL: producer.url });
    const again = await runCli(itemFlags(prefix), { DATABASE_URL: producer.url });

    expect(again, again.stderr).toMatchObject({ code: 0, stdout: first.stdout });
    expect(again.stderr).toContain('already present (idempotent)');
    expect(await queuedRows(prefix)).toHaveLength(1);
  });

  it('enqueues a JSON-lines file (blank lines skipped) and reports repeats as already present', async () => {
    const prefix = uniquePrefix('cli-file');
    const items = [
      item(prefix, 1, `${prefix}-a`),
      item(prefix, 2, `${prefix}-b`),
      item(prefix, 3, `${prefix}-a`),
    ];
    const file = await files.write(`${prefix}.jsonl`, `\n${jsonLines(items)}\n`);

    const result = await runCli(['enqueue', '--file', file], { DATABASE_URL: producer.url });
    expect(result, result.stderr).toMatchObject({ code: 0 });
    expect(result.stderr).toContain('3 enqueued, 0 already present (idempotent)');
    // One "outbox_id sequence_id state" line per item, in file order.
    expect(result.stdout.trim().split('\n')).toEqual([
      expect.stringMatching(new RegExp(`^${UUID} 1 PENDING$`)),
      expect.stringMatching(new RegExp(`^${UUID} 1 PENDING$`)),
      expect.stringMatching(new RegExp(`^${UUID} 2 PENDING$`)),
    ]);
    expect(result.stdout + result.stderr).not.toContain(SECRET_ACCOUNT);

    const rows = await queuedRows(prefix);
    expect(
      rows.map((row) => [row.participant_id, row.sequence_id, row.instruction_id, row.payload]),
    ).toEqual([
      [`${prefix}-a`, '1', `${prefix}-1`, items[0]?.payload],
      [`${prefix}-a`, '2', `${prefix}-3`, items[2]?.payload],
      [`${prefix}-b`, '1', `${prefix}-2`, items[1]?.payload],
    ]);

    // One more item plus the three known ones (one of them twice in the same file).
    const more = await files.write(
      `${prefix}-more.jsonl`,
      jsonLines([...items, items[0], item(prefix, 4, `${prefix}-b`)]),
    );
    const rerun = await runCli(['enqueue', '--file', more], { DATABASE_URL: producer.url });
    expect(rerun, rerun.stderr).toMatchObject({ code: 0 });
    expect(rerun.stderr).toContain('1 enqueued, 4 already present (idempotent)');
    expect(rerun.stdout.trim().split('\n')).toHaveLength(5);
    expect(await queuedRows(prefix)).toHaveLength(4);
  });

  it('a bad line fails the whole file: non-zero exit naming the file, line and problem; nothing enqueued', async () => {
    const prefix = uniquePrefix('cli-bad');
    const good = item(prefix, 1, `${prefix}-a`);
    const { railType: _missing, ...withoutRailType } = item(prefix, 3, `${prefix}-a`);
    const file = await files.write(
      `${prefix}.jsonl`,
      jsonLines([
        good,
        item(prefix, 2, `${prefix}-a`),
        withoutRailType,
        item(prefix, 4, `${prefix}-a`),
      ]),
    );

    const result = await runCli(['enqueue', '--file', file], { DATABASE_URL: producer.url });

    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(`symphony-relay: enqueue: ${file} line 3: railType is missing`);
    expect(result.stderr).toContain('nothing was enqueued');
    expect(result.stdout).toBe('');
    expect(await queuedRows(prefix)).toEqual([]);
  });

  it('a line that is not JSON, or whose payload is not an object, is named without echoing its content', async () => {
    const prefix = uniquePrefix('cli-json');
    const truncated = JSON.stringify(item(prefix, 2, `${prefix}-a`)).slice(0, -5);
    const notJson = await files.write(
      `${prefix}-truncated.jsonl`,
      `${JSON.stringify(item(prefix, 1, `${prefix}-a`))}\n${truncated}\n`,
    );
    const arrayPayload = await files.write(
      `${prefix}-array.jsonl`,
      jsonLines([{ ...item(prefix, 1, `${prefix}-a`), payload: [SECRET_ACCOUNT] }]),
    );

    const first = await runCli(['enqueue', '--file', notJson], { DATABASE_URL: producer.url });
    const second = await runCli(['enqueue', '--file', arrayPayload], {
      DATABASE_URL: producer.url,
    });

    expect(first.code).not.toBe(0);
    expect(first.stderr).toContain(`${notJson} line 2: the line is not valid JSON`);
    expect(second.code).not.toBe(0);
    expect(second.stderr).toContain(
      `${arrayPayload} line 1: payload must be a JSON object, got an array`,
    );
    expect(first.stderr + second.stderr).not.toContain(SECRET_ACCOUNT);
    expect(await queuedRows(prefix)).toEqual([]);
  });

  it('a file over the item or byte bound is refused whole before anything is read or enqueued', async () => {
    const prefix = uniquePrefix('cli-bound');
    const items = Array.from({ length: MAX_FILE_ITEMS + 1 }, (_, n) =>
      item(prefix, n + 1, `${prefix}-${n % 7}`),
    );
    const tooMany = await files.write(`${prefix}-many.jsonl`, jsonLines(items));
    // Sparse: the size is refused from the file's metadata, so nothing is written or read.
    const tooLarge = await files.write(`${prefix}-large.jsonl`, '');
    await truncate(tooLarge, MAX_FILE_BYTES + 1);

    const many = await runCli(['enqueue', '--file', tooMany], { DATABASE_URL: producer.url });
    const large = await runCli(['enqueue', '--file', tooLarge], { DATABASE_URL: producer.url });

    expect(many.code).toBe(2);
    expect(many.stderr).toBe(
      `symphony-relay: enqueue: ${tooMany} holds ${MAX_FILE_ITEMS + 1} items; a file may hold at most ` +
        `${MAX_FILE_ITEMS} (one transaction): split it, e.g. split -l ${MAX_FILE_ITEMS} ${tooMany} part-, ` +
        'and enqueue each part; nothing was enqueued\n',
    );
    expect(large.code).toBe(2);
    expect(large.stderr).toContain(
      `enqueue: ${tooLarge} is ${MAX_FILE_BYTES + 1} bytes; a file may hold at most ${MAX_FILE_BYTES} bytes`,
    );
    expect(large.stderr.trim().split('\n')).toHaveLength(1);
    expect(await queuedRows(prefix)).toEqual([]);

    // At the bound itself the file goes in whole.
    const atBound = await files.write(`${prefix}-at.jsonl`, jsonLines(items.slice(1)));
    const accepted = await runCli(['enqueue', '--file', atBound], { DATABASE_URL: producer.url });
    expect(accepted, accepted.stderr).toMatchObject({ code: 0 });
    expect(accepted.stderr).toContain(`${MAX_FILE_ITEMS} enqueued, 0 already present`);
    expect(await queuedRows(prefix)).toHaveLength(MAX_FILE_ITEMS);
  });

  it('a file is enqueued all-or-nothing: a database refusal on line 3 rolls back lines 1 and 2', async () => {
    const prefix = uniquePrefix('cli-atomic');
    // Valid JSON, so it passes the file check; jsonb refuses \u0000 (SQLSTATE 22P05).
    const unstorable = { ...item(prefix, 3, `${prefix}-a`), payload: { note: '\u0000' } };
    const file = await files.write(
      `${prefix}.jsonl`,
      jsonLines([item(prefix, 1, `${prefix}-a`), item(prefix, 2, `${prefix}-b`), unstorable]),
    );

    const result = await runCli(['enqueue', '--file', file], { DATABASE_URL: producer.url });

    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(
      `symphony-relay: enqueue of ${file} line 3 failed in the database: `,
    );
    expect(result.stderr).toContain('(SQLSTATE 22P05); nothing was enqueued');
    expect(result.stdout + result.stderr).not.toContain(SECRET_ACCOUNT);
    expect(await queuedRows(prefix)).toEqual([]);
    // Nor did the rolled-back items consume sequence numbers.
    const { rows } = await db.owner.query(
      'SELECT 1 FROM public.participant_outbox_sequences WHERE starts_with(participant_id, $1)',
      [prefix],
    );
    expect(rows).toEqual([]);
  });

  it('a login whose sessions do not act as symphony_ingest is refused before anything is enqueued', async () => {
    const reader = await db.createLoginRole(['symphony_readonly']);
    const prefix = uniquePrefix('cli-role');

    const result = await runCli(itemFlags(prefix), { DATABASE_URL: reader.url });

    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(
      `login role "${reader.name}" does not act as symphony_ingest (its sessions act as "symphony_readonly")`,
    );
    expect(await queuedRows(prefix)).toEqual([]);
  });

  it('without a connection string it exits 2 and says how to provide one', async () => {
    const result = await runCli(itemFlags(uniquePrefix('cli-nourl')));

    expect(result.code).toBe(2);
    expect(result.stderr).toContain('DATABASE_URL is not set');
  });
});
