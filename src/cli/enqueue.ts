import type { Command } from 'commander';
import { enqueuePaymentOutbox, type EnqueueRequest, type EnqueueResult } from '../db/outbox.ts';
import { databaseFailure, inTransaction, withDatabaseSession } from './database-session.ts';
import {
  MAX_FILE_BYTES,
  MAX_FILE_ITEMS,
  requestFromFlags,
  requestsFromFile,
  type EnqueueFlags,
} from './enqueue-input.ts';
import { CliError, requireDatabaseUrl } from './errors.ts';

const ROLE = 'symphony_ingest';

interface EnqueueOptions extends EnqueueFlags {
  file?: string;
  databaseUrl?: string;
}

interface LabelledRequest {
  request: EnqueueRequest;
  /** Where it came from, for messages: "items.jsonl line 3" or "the item flags". */
  source: string;
}

interface Enqueued {
  result: EnqueueResult;
  /** False when (instructionId, idempotencyKey) was already known: nothing new was queued. */
  isNew: boolean;
}

/**
 * Enqueues every request in one transaction, so a database failure on item 500 leaves
 * nothing behind either. An item is new when it was created inside this transaction:
 * its created_at is then the transaction timestamp (compared at the millisecond
 * precision of a JS Date, which only matters for the summary's counts). The transaction
 * holds each participant's sequence row until it commits, so other producers of the same
 * participants wait for the file; split very large files.
 */
async function enqueueAll(
  connectionString: string,
  requests: readonly LabelledRequest[],
): Promise<Enqueued[]> {
  return withDatabaseSession({ connectionString, command: 'enqueue', actAs: ROLE }, (client) =>
    inTransaction(client, async (startedAt) => {
      const enqueued: Enqueued[] = [];
      const seen = new Set<string>();
      for (const { request, source } of requests) {
        const result = await enqueuePaymentOutbox(client, request).catch((error: unknown) => {
          const failure = databaseFailure(`enqueue of ${source}`, ROLE, error);
          if (!(failure instanceof CliError) || requests.length === 1) throw failure;
          throw new CliError(`${failure.message}; nothing was enqueued (a file is all-or-nothing)`);
        });
        // A file may repeat an item: only its first occurrence created anything.
        const isNew =
          result.state === 'PENDING' &&
          result.createdAt.getTime() === startedAt.getTime() &&
          !seen.has(result.outboxId);
        seen.add(result.outboxId);
        enqueued.push({ result, isNew });
      }
      return enqueued;
    }),
  ).catch((error: unknown) => {
    throw databaseFailure('enqueue', ROLE, error);
  });
}

function itemLine({ result }: Enqueued): string {
  return `${result.outboxId} ${result.sequenceId} ${result.state}`;
}

export function registerEnqueueCommand(program: Command): void {
  program
    .command('enqueue')
    .summary(`queue payment instructions (flags or a JSON-lines file) as ${ROLE}`)
    .description(
      `queue payment instructions in the outbox, acting as ${ROLE}: one item from the item flags, ` +
        'or many from --file. Idempotent per (instruction id, idempotency key): a repeat returns the ' +
        'existing item. Prints "outbox_id sequence_id state" per item (payloads are never printed)',
    )
    .option('--instruction-id <id>', 'instruction id (one item)')
    .option('--participant-id <id>', 'participant whose sequence orders the item (one item)')
    .option('--idempotency-key <key>', 'idempotency key, sent to the rail (one item)')
    .option('--rail-type <type>', 'rail that delivers the item, e.g. sandbox or http (one item)')
    .option('--payload <json>', 'payment payload as a JSON object (one item)')
    .option(
      '--traceparent <w3c>',
      "optional W3C trace context of the producer's span; the item's dispatches continue its trace",
    )
    .option(
      '--file <items.jsonl>',
      'JSON lines, one {instructionId, participantId, idempotencyKey, railType, payload[, traceparent]} per line; ' +
        'every line is checked first and the file is enqueued all-or-nothing; ' +
        `at most ${MAX_FILE_ITEMS} items and ${MAX_FILE_BYTES / 1024 / 1024} MiB per file`,
    )
    .option(
      '--database-url <url>',
      `connection string of a login that is a member of ${ROLE} (default: $DATABASE_URL)`,
    )
    .action(async (options: EnqueueOptions) => {
      const { file, databaseUrl, ...flags } = options;
      if (file !== undefined && Object.values(flags).some((value) => value !== undefined)) {
        throw new CliError('enqueue: pass either --file or the item flags, not both', 2);
      }
      // Input is checked before the connection is opened: a bad file never touches the database.
      const requests: LabelledRequest[] =
        file === undefined
          ? [{ request: requestFromFlags(flags), source: 'the item flags' }]
          : (await requestsFromFile(file)).map(({ request, line }) => ({
              request,
              source: `${file} line ${line}`,
            }));
      const url = requireDatabaseUrl(databaseUrl, 'enqueue');
      const enqueued = await enqueueAll(url, requests);

      if (file === undefined) {
        const [single] = enqueued;
        if (!single) return;
        console.log(itemLine(single));
        if (!single.isNew) console.error('already present (idempotent): nothing new was queued');
        return;
      }
      // One line per item on stdout (scripts read it), the summary on stderr.
      for (const item of enqueued) console.log(itemLine(item));
      const fresh = enqueued.filter((item) => item.isNew).length;
      console.error(
        `${fresh} enqueued, ${enqueued.length - fresh} already present (idempotent) from ${file}`,
      );
    });
}
