/**
 * End-to-end throughput of the outbox on this machine, against an embedded PostgreSQL 18
 * (started here in a temp dir, default settings, one database per run):
 *
 *   enqueue   N items through enqueue_payment_outbox (one call each) vs enqueue_payment_outbox_batch
 *   relay     N pre-enqueued no-op items through the real Relayer (startRuntime, sandbox rail,
 *             latency 0, 100% DISPATCHED), completing per item vs group-committed batches
 *   peer      N no-op graphile-worker jobs on the same server (separate database), with its
 *             defaults and with its batching options
 *
 * Not a test: nothing here asserts a speed. Usage:
 *   npm run bench                       # N = 20000
 *   BENCH_ITEMS=5000 npm run bench
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { startRuntime } from '../src/cli/runtime.ts';
import { migrate } from '../src/db/migrate/runner.ts';
import {
  enqueuePaymentOutbox,
  enqueuePaymentOutboxBatch,
  type EnqueueRequest,
} from '../src/db/outbox.ts';
import { seedPolicy } from '../src/db/policy.ts';
import { ensureLoginRole } from '../src/db/roles.ts';
import { startEmbeddedPostgres, temporaryDataDir } from '../src/embedded/postgres.ts';
import { createLogger } from '../src/observability/logger.ts';

const ITEMS = Number(process.env.BENCH_ITEMS ?? 20_000);
/** Connections enqueueing at once, in both enqueue modes. */
const ENQUEUE_CONNECTIONS = 8;
const ENQUEUE_CHUNK = 500;
/** Relayer settings shared by both completion modes, so only the completion path differs. */
const RELAY_CONCURRENCY = 512;
const RELAY_CLAIM_BATCH = 512;
const PEER_CONCURRENCY = 16;
/** Per-item vs batched completion at the same settings, and batched at the shipped defaults. */
const RELAY_MODES = [
  {
    key: 'single',
    label: 'relay, one completion per item',
    batched: false,
    concurrency: RELAY_CONCURRENCY,
    claimBatch: RELAY_CLAIM_BATCH,
  },
  {
    key: 'batched',
    label: 'relay, batched completion',
    batched: true,
    concurrency: RELAY_CONCURRENCY,
    claimBatch: RELAY_CLAIM_BATCH,
  },
  {
    key: 'defaults',
    label: 'relay, batched completion, default 16 slots / claim 32',
    batched: true,
    concurrency: 16,
    claimBatch: 32,
  },
] as const;
const POLICY_FILE = fileURLToPath(new URL('../policy/development.json', import.meta.url));
const NO_OP_RAILS = JSON.stringify({
  sandbox: {
    type: 'sandbox',
    latencyMs: [0, 0],
    outcomes: { DISPATCHED: 1, RETRYABLE: 0, FAILED: 0 },
  },
});

interface Figure {
  name: string;
  items: number;
  seconds: number;
}

const perSecond = (figure: Figure) => figure.items / figure.seconds;

async function timed(name: string, items: number, work: () => Promise<void>): Promise<Figure> {
  const started = process.hrtime.bigint();
  await work();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const figure = { name, items, seconds };
  console.error(`  ${name}: ${perSecond(figure).toFixed(0)} items/s`);
  return figure;
}

function requests(label: string, count: number): EnqueueRequest[] {
  return Array.from({ length: count }, (_, n) => ({
    instructionId: `${label}-instruction-${n}`,
    // A handful of participants, as a real ingest stream has: sequences contend per participant.
    participantId: `${label}-participant-${n % 16}`,
    idempotencyKey: `${label}-key-${n}`,
    railType: 'sandbox',
    payload: { amount: '10.00', currency: 'ZMW', n },
  }));
}

/** Splits work over `connections` pool clients, each taking the next piece until none is left. */
async function fanOut<T>(
  pool: pg.Pool,
  connections: number,
  pieces: T[],
  run: (client: pg.PoolClient, piece: T) => Promise<unknown>,
) {
  let next = 0;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      const client = await pool.connect();
      try {
        while (next < pieces.length) {
          const piece = pieces[next++] as T;
          await run(client, piece);
        }
      } finally {
        client.release();
      }
    }),
  );
}

function chunks<T>(items: T[], size: number): T[][] {
  return Array.from({ length: Math.ceil(items.length / size) }, (_, index) =>
    items.slice(index * size, (index + 1) * size),
  );
}

async function main(): Promise<void> {
  console.error(`starting embedded PostgreSQL 18 (N = ${ITEMS})`);
  const server = await startEmbeddedPostgres({
    dataDir: temporaryDataDir('symphony-bench'),
    persistent: false,
    maxConnections: 200,
  });
  const admin = new pg.Client({ connectionString: server.adminUrl });
  await admin.connect();
  const pools: pg.Pool[] = [];
  const urlOf = (database: string) => server.adminUrl.replace(/\/postgres$/, `/${database}`);
  const symphonyDatabase = async (name: string) => {
    await admin.query(`CREATE DATABASE ${name}`);
    await migrate(urlOf(name));
    const pool = new pg.Pool({ connectionString: urlOf(name), max: ENQUEUE_CONNECTIONS + 2 });
    pools.push(pool);
    await seedPolicy(pool, { file: POLICY_FILE });
    return pool;
  };

  try {
    const figures: Figure[] = [];

    console.error('enqueue');
    const singlePool = await symphonyDatabase('bench_enqueue_single');
    figures.push(
      await timed('enqueue, one call per item', ITEMS, () =>
        fanOut(singlePool, ENQUEUE_CONNECTIONS, requests('single', ITEMS), (client, request) =>
          enqueuePaymentOutbox(client, request),
        ),
      ),
    );
    const batchPool = await symphonyDatabase('bench_enqueue_batch');
    figures.push(
      await timed(`enqueue, batches of ${ENQUEUE_CHUNK}`, ITEMS, () =>
        fanOut(
          batchPool,
          ENQUEUE_CONNECTIONS,
          chunks(requests('batch', ITEMS), ENQUEUE_CHUNK),
          (client, chunk) => enqueuePaymentOutboxBatch(client, chunk),
        ),
      ),
    );

    // Roles are cluster-wide (created by the first migration); one executor login serves all.
    const password = randomBytes(12).toString('hex');
    await ensureLoginRole(admin, { name: 'bench_relayer', password, actsAs: 'symphony_executor' });

    console.error('relay');
    for (const mode of RELAY_MODES) {
      const { batched, concurrency, claimBatch } = mode;
      const name = `bench_relay_${mode.key}`;
      const pool = await symphonyDatabase(name);
      await fanOut(
        pool,
        ENQUEUE_CONNECTIONS,
        chunks(requests(name, ITEMS), ENQUEUE_CHUNK),
        (c, chunk) => enqueuePaymentOutboxBatch(c, chunk),
      );
      const url = new URL(urlOf(name));
      url.username = 'bench_relayer';
      url.password = password;
      let runtime: Awaited<ReturnType<typeof startRuntime>> | undefined;
      figures.push(
        await timed(mode.label, ITEMS, async () => {
          runtime = await startRuntime(
            {
              DATABASE_URL: url.toString(),
              SYMPHONY_WORKER_ID: name,
              SYMPHONY_HTTP_PORT: '0',
              SYMPHONY_CONCURRENCY: String(concurrency),
              SYMPHONY_BATCH_SIZE: String(claimBatch),
              SYMPHONY_COMPLETION_BATCH: String(batched),
              SYMPHONY_RAILS: NO_OP_RAILS,
              LOG_LEVEL: 'silent',
            },
            createLogger({ level: 'silent', name: 'bench' }),
          );
          await waitForEmptyQueue(pool);
        }),
      );
      await runtime?.stop();
      await assertAllDispatched(pool, ITEMS);
    }

    console.error('peer: graphile-worker');
    figures.push(await graphileWorker(admin, urlOf, 'defaults', {}));
    figures.push(
      await graphileWorker(admin, urlOf, 'batching', {
        localQueue: { size: 500 },
        completeJobBatchDelay: 5,
      }),
    );

    printTable(figures);
  } finally {
    await Promise.all(pools.map((pool) => pool.end()));
    await admin.end();
    await server.stop();
  }
}

async function waitForEmptyQueue(pool: pg.Pool): Promise<void> {
  for (;;) {
    const { rows } = await pool.query<{ pending: boolean }>(
      'SELECT EXISTS (SELECT 1 FROM public.payment_outbox_pending) AS pending',
    );
    if (!rows[0]?.pending) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A benchmark that lost or duplicated items would measure nothing: check before printing. */
async function assertAllDispatched(pool: pg.Pool, items: number): Promise<void> {
  const { rows } = await pool.query<{ items: number; attempts: number }>(
    `SELECT count(DISTINCT outbox_id)::int AS items, count(*)::int AS attempts
       FROM public.payment_outbox_attempts WHERE state = 'DISPATCHED'`,
  );
  const row = rows[0];
  if (row?.items !== items || row.attempts !== items) {
    throw new Error(`expected ${items} items DISPATCHED once each, found ${JSON.stringify(row)}`);
  }
}

async function graphileWorker(
  admin: pg.Client,
  urlOf: (database: string) => string,
  label: string,
  workerPreset: Record<string, unknown>,
): Promise<Figure> {
  const { makeWorkerUtils, run } = await import('graphile-worker');
  const database = `bench_graphile_${label}`;
  await admin.query(`CREATE DATABASE ${database}`);
  const connectionString = urlOf(database);
  const utils = await makeWorkerUtils({ connectionString });
  await utils.migrate();
  for (const chunk of chunks(
    Array.from({ length: ITEMS }, (_, n) => n),
    1000,
  )) {
    await utils.addJobs(chunk.map((n) => ({ identifier: 'noop', payload: { n } })));
  }
  await utils.release();
  let done = 0;
  let finish: () => void = () => {};
  const allDone = new Promise<void>((resolve) => (finish = resolve));
  const figure = await timed(
    `graphile-worker ${label}, concurrency ${PEER_CONCURRENCY}`,
    ITEMS,
    async () => {
      const runner = await run({
        connectionString,
        concurrency: PEER_CONCURRENCY,
        noHandleSignals: true,
        pollInterval: 1000,
        logger: new (await import('graphile-worker')).Logger(() => () => {}),
        preset: { worker: workerPreset },
        taskList: { noop: async () => {} },
      });
      runner.events.on('job:success', () => {
        done += 1;
        if (done === ITEMS) finish();
      });
      await allDone;
      await runner.stop();
    },
  );
  return figure;
}

function printTable(figures: Figure[]): void {
  const byName = new Map(figures.map((figure) => [figure.name, perSecond(figure)]));
  const rate = (name: string) => byName.get(name) ?? Number.NaN;
  const lines = [
    '',
    `| measurement (N = ${ITEMS}) | seconds | items/s |`,
    '| --- | ---: | ---: |',
    ...figures.map(
      (figure) =>
        `| ${figure.name} | ${figure.seconds.toFixed(2)} | ${perSecond(figure).toFixed(0)} |`,
    ),
    '',
    '| ratio | value |',
    '| --- | ---: |',
    ...[
      [
        'batch enqueue / single enqueue',
        `enqueue, batches of ${ENQUEUE_CHUNK}`,
        'enqueue, one call per item',
      ],
      [
        'relay batched / relay per item',
        'relay, batched completion',
        'relay, one completion per item',
      ],
      [
        'relay batched / graphile-worker defaults',
        'relay, batched completion',
        `graphile-worker defaults, concurrency ${PEER_CONCURRENCY}`,
      ],
      [
        'relay per item / graphile-worker defaults',
        'relay, one completion per item',
        `graphile-worker defaults, concurrency ${PEER_CONCURRENCY}`,
      ],
      [
        'relay at defaults / graphile-worker defaults (both 16 at once)',
        'relay, batched completion, default 16 slots / claim 32',
        `graphile-worker defaults, concurrency ${PEER_CONCURRENCY}`,
      ],
      [
        'relay batched / graphile-worker batching',
        'relay, batched completion',
        `graphile-worker batching, concurrency ${PEER_CONCURRENCY}`,
      ],
    ].map(([label, over, under]) => `| ${label} | ${(rate(over!) / rate(under!)).toFixed(2)}x |`),
    '',
    `relayer (unless "default"): SYMPHONY_CONCURRENCY=${RELAY_CONCURRENCY} SYMPHONY_BATCH_SIZE=${RELAY_CLAIM_BATCH}, sandbox rail latency 0; ` +
      `enqueue: ${ENQUEUE_CONNECTIONS} connections; node ${process.version}`,
  ];
  console.log(lines.join('\n'));
}

await main();
