/**
 * The relayer against graphile-worker 0.17 on this machine, side by side in one run, on one
 * embedded PostgreSQL 18 (started here in a temp dir, default settings, one database per case,
 * dropped once its figures are taken; each figure says in how many 100 ms samples of its
 * measurement an autovacuum worker ran):
 *
 *   enqueue   N items: enqueue_payment_outbox one call each vs graphile_worker.add_job, and
 *             enqueue_payment_outbox_batch vs WorkerUtils.addJobs (and, for reference,
 *             add_jobs with the payloads built by the server), in chunks of 500 (8
 *             connections each)
 *   drain     N pre-enqueued no-op items: the relayer at its shipped defaults and tuned (both
 *             through the real runtime, sandbox rail latency 0, 100% DISPATCHED), its own
 *             claim + batch completion SQL driven by plain clients (and, for reference, the
 *             same claims with each batch deleted instead: what the ledger costs; and the
 *             same SQL on a ledger stripped to one index with no id or checks: the least a
 *             durable attempt row per item costs),
 *             graphile-worker tuned (concurrency 24, localQueue 500, batch delays 0) and at
 *             its defaults; then the headline pair (relayer defaults, graphile-worker tuned)
 *             again, back to back, the first to run alternating: the ratio is the median of
 *             the rounds' ratios
 *   rss       peak RSS (VmHWM) of a `symphony-relay run` process draining N items at defaults,
 *             compiled as the image runs it (`npm run build` first) and through tsx as a
 *             checkout runs it, and of a graphile-worker process (bench/graphile-worker-
 *             process.mjs) draining N jobs, tuned and at its defaults; and each process's
 *             drain rate from its first item done
 *   latency   enqueue commit -> arrival at a loopback HTTP rail, at 200/s and 1,000/s, relayer at
 *             defaults vs graphile-worker tuned and at its defaults (its task POSTs to the same
 *             server), each after one unmeasured second of the same traffic
 *   scale     the relayer's drain rate (N items, defaults) with L not-yet-due rows behind
 *             the due ones, and with L due rows (the first N, then the next N), against N
 *             with nothing else (each drain with L rows paired with one of N with nothing
 *             else, back to back; a case's ratio is the mean of its two pairs' ratios);
 *             whether any statement of a claim
 *             scans the queue at L rows (auto_explain); a new connection's first claims on
 *             L due rows before and after the queue is first analyzed (and whether any plan
 *             sorts the due rows); the cost of the shared queue sample and of the exact
 *             outbox_queue_stats() scan at L rows; and N due behind L held back (a paused
 *             rail; for graphile-worker, jobs of a task it does not run), both systems
 *   cpu/where (with drain) CPU per item of this process and of the database backends, for
 *             the relayer, its SQL alone and graphile-worker; and the statements that took
 *             the most server time per item (pg_stat_statements, nested statements included)
 *
 * Not a test: nothing here asserts a speed. Knobs:
 *   BENCH_ITEMS=20000        N
 *   BENCH_LARGE=1000000      L (the scale cases)
 *   BENCH_LATENCY_SECONDS=5  length of each latency run
 *   BENCH_SECTIONS=enqueue,drain,rss,latency,scale   any subset
 *   BENCH_TUNED_CONCURRENCY=1024 BENCH_TUNED_BATCH=256   the "tuned" relayer
 *   BENCH_DRAIN_ROUNDS=3     rounds of the headline drain pair (the first is the main drains)
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { Agent } from 'undici';
import { startRuntime, type Runtime } from '../src/cli/runtime.ts';
import { claimPlans, readsWhole, sortsDueRows } from '../test/support/statement-plans.ts';
import { loadConfig } from '../src/config.ts';
import { migrate } from '../src/db/migrate/runner.ts';
import {
  claimOutboxBatch,
  completeOutboxBatch,
  type ClaimedItem,
  enqueuePaymentOutbox,
  enqueuePaymentOutboxBatch,
  type EnqueueRequest,
} from '../src/db/outbox.ts';
import { seedPolicy } from '../src/db/policy.ts';
import { ensureLoginRole } from '../src/db/roles.ts';
import { startEmbeddedPostgres, temporaryDataDir } from '../src/embedded/postgres.ts';
import { createLogger } from '../src/observability/logger.ts';

/** A knob from the environment: a whole number in range, or the run stops before it starts. */
function knob(name: string, fallback: number, max: number): number {
  const text = process.env[name];
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1 || value > max) {
    console.error(
      `bench: ${name}=${text} is not a whole number from 1 to ${max}; unset it or give one`,
    );
    process.exit(2);
  }
  return value;
}

const ITEMS = knob('BENCH_ITEMS', 20_000, 10_000_000);
const LARGE = knob('BENCH_LARGE', 1_000_000, 100_000_000);
const LATENCY_SECONDS = knob('BENCH_LATENCY_SECONDS', 5, 3600);
/** Unmeasured traffic at the same rate before each latency run. */
const LATENCY_WARMUP_SECONDS = 1;
const ALL_SECTIONS = ['enqueue', 'drain', 'rss', 'latency', 'scale'];
const SECTIONS = new Set((process.env.BENCH_SECTIONS ?? ALL_SECTIONS.join(',')).split(','));
const unknownSections = [...SECTIONS].filter((section) => !ALL_SECTIONS.includes(section));
if (unknownSections.length > 0) {
  console.error(
    `bench: BENCH_SECTIONS names ${unknownSections.join(', ')}; choose among ${ALL_SECTIONS.join(',')}`,
  );
  process.exit(2);
}
const TUNED_CONCURRENCY = knob('BENCH_TUNED_CONCURRENCY', 1024, 100_000);
const TUNED_BATCH = knob('BENCH_TUNED_BATCH', 256, 1000);
/** Rounds of the headline drain pair (relayer defaults, graphile-worker tuned). */
const DRAIN_ROUNDS = knob('BENCH_DRAIN_ROUNDS', 3, 20);
const DEFAULTS = loadConfig({});
const ENQUEUE_CONNECTIONS = 8;
const ENQUEUE_CHUNK = 500;
/** The plain-SQL drain: this many clients, each claiming and completing this many at once. */
const SQL_CLIENTS = 2;
const SQL_BATCH = 256;
const GRAPHILE_TUNED = {
  concurrency: 24,
  preset: { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 },
};
const GRAPHILE_DEFAULTS = { concurrency: 1, preset: {} };
const POLICY_FILE = fileURLToPath(new URL('../policy/development.json', import.meta.url));
const CLI = fileURLToPath(new URL('../bin/symphony-relay.js', import.meta.url));
const DIST_CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const GRAPHILE_PROCESS = fileURLToPath(new URL('./graphile-worker-process.mjs', import.meta.url));
const NO_OP_RAILS = JSON.stringify({
  sandbox: {
    type: 'sandbox',
    latencyMs: [0, 0],
    outcomes: { DISPATCHED: 1, RETRYABLE: 0, FAILED: 0 },
  },
});

/** The no-op rail, and a rail the held-back scale case pauses. */
const HELD_BACK_RAILS = JSON.stringify({
  ...(JSON.parse(NO_OP_RAILS) as Record<string, unknown>),
  held: { type: 'sandbox', latencyMs: [0, 0] },
});

interface Row {
  section: string;
  name: string;
  value: number;
  unit: string;
  load: string;
  /** Share of the case's 100 ms samples in which an autovacuum worker ran (any database). */
  autovacuum: string;
}

const rows: Row[] = [];
const loadNow = () =>
  os
    .loadavg()
    .map((value) => value.toFixed(1))
    .join(' ');

/**
 * Whether the server did background work while a case was measured: set by main to sample
 * pg_stat_activity every 100 ms. A case calls `measuring()` when its measurement starts.
 */
const background = { samples: 0, autovacuum: 0, since: { samples: 0, autovacuum: 0 } };
const measuring = () => {
  background.since = { samples: background.samples, autovacuum: background.autovacuum };
};
const autovacuumShare = () =>
  `${background.autovacuum - background.since.autovacuum} of ${background.samples - background.since.samples}`;

/**
 * Rates as whole items, ratios to three places (a ratio that sits on a goal, 0.798 against
 * 0.8, must not print as met), the rest to two.
 */
function formatted(value: number, unit: string): string {
  return value.toFixed(unit === 'items/s' ? 0 : unit === 'x' ? 3 : 2);
}

function record(section: string, name: string, value: number, unit: string): number {
  rows.push({ section, name, value, unit, load: loadNow(), autovacuum: autovacuumShare() });
  console.error(`  ${name}: ${formatted(value, unit)} ${unit}`);
  return value;
}

/**
 * Set by main: a checkpoint, then resolves once no autovacuum worker runs (at most a minute),
 * so neither the writes nor the cleanup of one case land inside the next case's measurement.
 */
let untilQuiet: () => Promise<void> = async () => {};

/**
 * When the drain being measured recorded its first outcome (relayer: its completed counter,
 * polled every 10 ms; graphile-worker: its first job:success), so that a drain's rate can be
 * split into start-up and the rate after it.
 */
let firstOutcomeAt: bigint | undefined;
const firstOutcome = () => {
  firstOutcomeAt ??= process.hrtime.bigint();
};

/**
 * Items per second from the start of `work` (start-up included: the figure the goals use).
 * For a drain it also records the start-up until the first outcome and the rate after it.
 */
async function rate(section: string, name: string, items: number, work: () => Promise<unknown>) {
  await untilQuiet();
  measuring();
  firstOutcomeAt = undefined;
  const started = process.hrtime.bigint();
  await work();
  const ended = process.hrtime.bigint();
  const overall = record(section, name, items / (Number(ended - started) / 1e9), 'items/s');
  if (firstOutcomeAt !== undefined) {
    record(
      section,
      `${name}: start-up until its first outcome`,
      Number(firstOutcomeAt - started) / 1e6,
      'ms',
    );
    record(
      section,
      `${name}: rate after its first outcome`,
      (items - 1) / (Number(ended - firstOutcomeAt) / 1e9),
      'items/s',
    );
  }
  return overall;
}

function requests(label: string, count: number, railType = 'sandbox'): EnqueueRequest[] {
  return Array.from({ length: count }, (_, n) => request(label, n, railType));
}

function request(label: string, n: number, railType = 'sandbox'): EnqueueRequest {
  return {
    instructionId: `${label}-instruction-${n}`,
    // A handful of participants, as a real ingest stream has: sequences contend per participant.
    participantId: `${label}-participant-${n % 16}`,
    idempotencyKey: `${label}-key-${n}`,
    railType,
    payload: { amount: '10.00', currency: 'ZMW', n },
  };
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
        while (next < pieces.length) await run(client, pieces[next++] as T);
      } finally {
        client.release();
      }
    }),
  );
}

/** `lanes` calls of `run` at once, each lane taking the next piece until none is left. */
async function inLanes<T>(lanes: number, pieces: T[], run: (piece: T) => Promise<unknown>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      while (next < pieces.length) await run(pieces[next++] as T);
    }),
  );
}

function chunks<T>(items: T[], size: number): T[][] {
  return Array.from({ length: Math.ceil(items.length / size) }, (_, index) =>
    items.slice(index * size, (index + 1) * size),
  );
}

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] ?? Number.NaN)
    : ((sorted[middle - 1] ?? Number.NaN) + (sorted[middle] ?? Number.NaN)) / 2;
}

interface Bench {
  admin: pg.Client;
  urlOf(database: string): string;
  /** A migrated database with the development policy, and an owner pool on it. */
  symphony(name: string): Promise<pg.Pool>;
  /** A migrated graphile-worker database. */
  graphile(name: string): Promise<string>;
  /** URL of the executor login on a database. */
  relayerUrl(name: string): string;
  /**
   * Drops a case's database once its figures are taken (its pools ended first), so that its
   * autovacuum and dirty pages do not land in a later case's measurement.
   */
  retire(name: string): Promise<void>;
}

/** Checks every `everyMs` until `done` says so or `timeoutMs` has passed (then goes on anyway). */
async function pollUntil(done: () => Promise<boolean>, timeoutMs: number, everyMs: number) {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline;) {
    if (await done()) return;
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

async function autovacuumWorkers(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ running: number }>(
    `SELECT count(*)::int AS running FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'`,
  );
  return rows[0]?.running ?? 0;
}

async function main(): Promise<void> {
  console.error(`starting embedded PostgreSQL 18 (N = ${ITEMS}, L = ${LARGE})`);
  const server = await startEmbeddedPostgres({
    dataDir: temporaryDataDir('symphony-bench'),
    persistent: false,
    maxConnections: 200,
    // Where the time goes: per-statement times inside the functions (track = all).
    settings: {
      shared_preload_libraries: 'pg_stat_statements',
      'pg_stat_statements.track': 'all',
    },
  });
  const admin = new pg.Client({ connectionString: server.adminUrl });
  await admin.connect();
  untilQuiet = async () => {
    await admin.query('CHECKPOINT');
    await pollUntil(async () => (await autovacuumWorkers(admin)) === 0, 60_000, 100);
  };
  const pools = new Map<string, pg.Pool>();
  const sampler = new pg.Client({ connectionString: server.adminUrl });
  await sampler.connect();
  const sampling = setInterval(() => {
    autovacuumWorkers(sampler)
      .then((running) => {
        background.samples += 1;
        if (running > 0) background.autovacuum += 1;
      })
      .catch(() => {});
  }, 100);
  const urlOf = (database: string) => server.adminUrl.replace(/\/postgres$/, `/${database}`);
  const password = randomBytes(12).toString('hex');
  const bench: Bench = {
    admin,
    urlOf,
    async symphony(name) {
      await admin.query(`CREATE DATABASE ${name}`);
      await migrate(urlOf(name));
      const pool = new pg.Pool({ connectionString: urlOf(name), max: ENQUEUE_CONNECTIONS + 2 });
      pools.set(name, pool);
      await seedPolicy(pool, { file: POLICY_FILE });
      return pool;
    },
    async graphile(name) {
      await admin.query(`CREATE DATABASE ${name}`);
      const { makeWorkerUtils } = await import('graphile-worker');
      const utils = await makeWorkerUtils({ connectionString: urlOf(name) });
      await utils.migrate();
      await utils.release();
      return urlOf(name);
    },
    relayerUrl(name) {
      const url = new URL(urlOf(name));
      url.username = 'bench_relayer';
      url.password = password;
      return url.toString();
    },
    async retire(name) {
      await pools.get(name)?.end();
      pools.delete(name);
      // A pool's end() resolves before its sockets close: wait for the backends to go, so
      // that FORCE terminates none that a client here would still hear from.
      await pollUntil(
        async () => {
          const { rows } = await admin.query<{ connected: number }>(
            'SELECT count(*)::int AS connected FROM pg_stat_activity WHERE datname = $1',
            [name],
          );
          return rows[0]?.connected === 0;
        },
        10_000,
        20,
      );
      await admin.query(`DROP DATABASE ${name} WITH (FORCE)`);
    },
  };
  try {
    // Roles are cluster-wide (created by the first migration); one executor login serves all.
    await bench.symphony('bench_roles');
    await ensureLoginRole(admin, { name: 'bench_relayer', password, actsAs: 'symphony_executor' });
    if (SECTIONS.has('enqueue')) await enqueueSection(bench);
    if (SECTIONS.has('drain')) await drainSection(bench);
    if (SECTIONS.has('rss')) await rssSection(bench);
    if (SECTIONS.has('latency')) await latencySection(bench);
    if (SECTIONS.has('scale')) await scaleSection(bench);
    printTable();
  } finally {
    clearInterval(sampling);
    await Promise.all([...pools.values()].map((pool) => pool.end()));
    await sampler.end();
    await admin.end();
    await server.stop();
  }
}

async function enqueueSection(bench: Bench): Promise<void> {
  console.error('enqueue');
  const single = await bench.symphony('bench_enqueue_single');
  await rate('enqueue', 'relayer enqueue, one call per item', ITEMS, () =>
    fanOut(single, ENQUEUE_CONNECTIONS, requests('single', ITEMS), (client, one) =>
      enqueuePaymentOutbox(client, one),
    ),
  );
  await bench.retire('bench_enqueue_single');
  const batch = await bench.symphony('bench_enqueue_batch');
  await rate('enqueue', `relayer enqueue, batches of ${ENQUEUE_CHUNK}`, ITEMS, () =>
    fanOut(
      batch,
      ENQUEUE_CONNECTIONS,
      chunks(requests('batch', ITEMS), ENQUEUE_CHUNK),
      (client, chunk) => enqueuePaymentOutboxBatch(client, chunk),
    ),
  );
  await bench.retire('bench_enqueue_batch');
  await graphileEnqueue(bench, 'bench_graphile_add_job', (pool) =>
    rate('enqueue', 'graphile-worker add_job with job_key, one call per job', ITEMS, () =>
      fanOut(
        pool,
        ENQUEUE_CONNECTIONS,
        Array.from({ length: ITEMS }, (_, n) => n),
        (client, n) =>
          client.query(`SELECT graphile_worker.add_job('noop', $1::json, job_key => $2)`, [
            JSON.stringify({ amount: '10.00', currency: 'ZMW', n }),
            `single-key-${n}`,
          ]),
      ),
    ),
  );
  // Its users add jobs through WorkerUtils.addJobs: the payloads go as JSON from this process,
  // as the relayer's do, and every added job comes back. The figure the ratio uses.
  await graphileEnqueue(bench, 'bench_graphile_add_jobs_utils', async (pool) => {
    const { makeWorkerUtils } = await import('graphile-worker');
    const utils = await makeWorkerUtils({ pgPool: pool });
    try {
      await rate('enqueue', GRAPHILE_ADD_JOBS, ITEMS, () =>
        inLanes(
          ENQUEUE_CONNECTIONS,
          chunks(
            Array.from({ length: ITEMS }, (_, n) => n),
            ENQUEUE_CHUNK,
          ),
          (chunk) =>
            utils.addJobs(
              chunk.map((n) => ({
                identifier: 'noop',
                payload: { amount: '10.00', currency: 'ZMW', n },
                jobKey: `batch-key-${n}`,
              })),
            ),
        ),
      );
    } finally {
      await utils.release();
    }
  });
  // For reference, the call this bench used before: add_jobs with the payloads built by the
  // server from a list of numbers, so that no payload travels as JSON and no job comes back.
  await graphileEnqueue(bench, 'bench_graphile_add_jobs', (pool) =>
    rate('enqueue', GRAPHILE_ADD_JOBS_SERVER_BUILT, ITEMS, () =>
      fanOut(
        pool,
        ENQUEUE_CONNECTIONS,
        chunks(
          Array.from({ length: ITEMS }, (_, n) => n),
          ENQUEUE_CHUNK,
        ),
        (client, chunk) =>
          client.query(
            `SELECT graphile_worker.add_jobs(array_agg(
             ROW('noop', json_build_object('amount', '10.00', 'currency', 'ZMW', 'n', n),
                 null, null, null, 'batch-key-' || n, null, null)::graphile_worker.job_spec))
             FROM unnest($1::int[]) AS n`,
            [chunk],
          ),
      ),
    ),
  );
}

const GRAPHILE_ADD_JOBS = `graphile-worker WorkerUtils.addJobs with jobKey, batches of ${ENQUEUE_CHUNK}`;
const GRAPHILE_ADD_JOBS_SERVER_BUILT = `graphile-worker add_jobs with job_key, batches of ${ENQUEUE_CHUNK}, payloads built by the server (reference)`;

/** A graphile-worker database, a producer pool on it for `work`, then the database retired. */
async function graphileEnqueue(
  bench: Bench,
  database: string,
  work: (pool: pg.Pool) => Promise<unknown>,
): Promise<void> {
  const pool = new pg.Pool({
    connectionString: await bench.graphile(database),
    max: ENQUEUE_CONNECTIONS,
  });
  try {
    await work(pool);
  } finally {
    await pool.end();
  }
  await bench.retire(database);
}

/**
 * CPU spent per item by this process (the relayer or graphile-worker runs in it) and by the
 * database backends serving `database` (as `user` if given), read from /proc: which side of
 * the 2 CPUs a drain is bound by, not just how fast it went. The embedded server is local.
 */
async function cpuMeter(bench: Bench, database: string, user?: string) {
  // schedstat's first field is the task's time on a CPU in nanoseconds; /proc/<pid>/stat
  // counts in 10 ms ticks, too coarse for the start-up of six backends.
  const backendNs = async () => {
    const { rows } = await bench.admin.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND ($2::text IS NULL OR usename = $2)`,
      [database, user ?? null],
    );
    let ns = 0;
    for (const { pid } of rows) {
      try {
        ns += Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
      } catch {
        // The backend ended between the two reads: its time is lost, the figure a little low.
      }
    }
    return ns;
  };
  const nsAtStart = await backendNs();
  const nodeAtStart = process.cpuUsage();
  return {
    /** Call before the drain's connections close; records µs of CPU per item on each side. */
    async record(label: string, items: number) {
      const node = process.cpuUsage(nodeAtStart);
      const backendUs = ((await backendNs()) - nsAtStart) / 1e3;
      record('cpu', `${label}: database backends, CPU per item`, backendUs / items, 'µs');
      record(
        'cpu',
        `${label}: Node process, CPU per item`,
        (node.user + node.system) / items,
        'µs',
      );
    },
    /** Records the CPU spent so far and how long `wallMs` took, in ms: a worker's start-up. */
    async recordSoFar(label: string, wallMs: number) {
      const node = process.cpuUsage(nodeAtStart);
      const backendMs = ((await backendNs()) - nsAtStart) / 1e6;
      record('cpu', `${label}: time`, wallMs, 'ms');
      record('cpu', `${label}: database backends, CPU`, backendMs, 'ms');
      record('cpu', `${label}: Node process, CPU`, (node.user + node.system) / 1e3, 'ms');
    },
  };
}

/** Runs `work` on a superuser connection to `database`, closed afterwards. */
async function onDatabase<T>(
  bench: Bench,
  database: string,
  work: (client: pg.Client) => Promise<T>,
): Promise<T> {
  const client = new pg.Client({ connectionString: bench.urlOf(database) });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** The statements that took the most time in `database` since the last reset, per item. */
async function statementTimes(bench: Bench, database: string, label: string, items: number) {
  await onDatabase(bench, database, async (client) => {
    const { rows: top } = await client.query<{ query: string; calls: string; total: number }>(
      `SELECT regexp_replace(query, '\\s+', ' ', 'g') AS query, calls, total_exec_time AS total
         FROM pg_stat_statements
        WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
        ORDER BY total_exec_time DESC LIMIT 6`,
    );
    for (const row of top) {
      record(
        'where',
        `${label}: ${row.query.slice(0, 90).replaceAll('|', '/')} (${row.calls} calls)`,
        (row.total * 1000) / items,
        'µs/item',
      );
    }
  });
}

async function resetStatementTimes(bench: Bench, database: string): Promise<void> {
  await onDatabase(bench, database, async (client) => {
    await client.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    await client.query('SELECT pg_stat_statements_reset()');
  });
}

async function filledQueue(bench: Bench, name: string, items: number): Promise<pg.Pool> {
  const pool = await bench.symphony(name);
  await fanOut(
    pool,
    ENQUEUE_CONNECTIONS,
    chunks(requests(name, items), ENQUEUE_CHUNK),
    (c, chunk) => enqueuePaymentOutboxBatch(c, chunk),
  );
  return pool;
}

/** Drains the queue through the real runtime in this process until `done` says so. */
async function drainWithRuntime(
  bench: Bench,
  name: string,
  settings: Record<string, string>,
  done: (runtime: Runtime) => Promise<boolean>,
  beforeStop?: () => Promise<void>,
  started?: (startMs: number) => Promise<void>,
): Promise<void> {
  const starting = process.hrtime.bigint();
  const runtime = await startRuntime(
    {
      DATABASE_URL: bench.relayerUrl(name),
      SYMPHONY_WORKER_ID: name,
      SYMPHONY_HTTP_PORT: '0',
      SYMPHONY_RAILS: NO_OP_RAILS,
      LOG_LEVEL: 'silent',
      ...settings,
    },
    createLogger({ level: 'silent', name: 'bench' }),
  );
  try {
    await started?.(Number(process.hrtime.bigint() - starting) / 1e6);
    while (!(await done(runtime))) await new Promise((resolve) => setTimeout(resolve, 10));
    await beforeStop?.();
  } finally {
    await runtime.stop();
  }
}

const queueEmpty = (pool: pg.Pool) => async () => {
  const { rows } = await pool.query<{ pending: boolean }>(
    'SELECT EXISTS (SELECT 1 FROM public.payment_outbox_pending) AS pending',
  );
  return !rows[0]?.pending;
};

/**
 * The runtime has recorded `count` outcomes, by its own counter: asking costs the database
 * nothing (a count of the attempt rows every 10 ms cost the drain it measured a share of a
 * CPU), as graphile-worker's drains count its job:success events.
 */
const outcomesRecorded = (count: number) => async (runtime: Runtime) => {
  const counter = runtime.metrics.registry.getSingleMetric('symphony_relay_items_completed_total');
  const { values } = (await counter?.get()) ?? { values: [] };
  const recorded = values.reduce((sum, { value }) => sum + value, 0);
  if (recorded > 0) firstOutcome();
  return recorded >= count;
};

const attemptsReached = (pool: pg.Pool, count: number) => async () => {
  const { rows } = await pool.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM public.payment_outbox_attempts',
  );
  return (rows[0]?.n ?? 0) >= count;
};

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

const SQL_ALONE = `relayer SQL alone, ${SQL_CLIENTS} clients x claim+complete ${SQL_BATCH}`;
const WITHOUT_LEDGER = `reference, not a mode of the relayer: the same claims, each batch then deleted (no attempt row, no lease fence)`;

/** SQL_CLIENTS plain clients claim SQL_BATCH at a time until the queue is empty. */
async function claimUntilEmpty(
  executor: pg.Pool,
  finish: (workerId: string, claimed: ClaimedItem[]) => Promise<unknown>,
): Promise<number> {
  const counts = await Promise.all(
    Array.from({ length: SQL_CLIENTS }, async (_, index) => {
      const workerId = `sql-${index}`;
      let claimedHere = 0;
      for (;;) {
        const claimed = await claimOutboxBatch(executor, {
          batchSize: SQL_BATCH,
          workerId,
          leaseSeconds: 60,
          railTypes: ['sandbox'],
        });
        if (claimed.length === 0) return claimedHere;
        claimedHere += claimed.length;
        await finish(workerId, claimed);
      }
    }),
  );
  return counts.reduce((sum, count) => sum + count, 0);
}

/**
 * What recording the ledger costs: the SQL loop above with each claimed batch deleted from the
 * queue by the owner instead of completed (graphile-worker's complete_jobs is such a delete).
 * The difference between the two, in rate and in the backends' CPU per item, is the attempt
 * row, its checks and the lease fence that every completion of the relayer writes.
 */
async function withoutLedgerReference(bench: Bench): Promise<void> {
  const name = 'bench_drain_no_ledger';
  const owner = await filledQueue(bench, name, ITEMS);
  const executor = new pg.Pool({ connectionString: bench.relayerUrl(name), max: SQL_CLIENTS });
  const meter = await cpuMeter(bench, name);
  let claimed = 0;
  try {
    await rate('drain', WITHOUT_LEDGER, ITEMS, async () => {
      claimed = await claimUntilEmpty(executor, (_, batch) =>
        owner.query(
          'DELETE FROM public.payment_outbox_pending WHERE outbox_id = ANY ($1::uuid[])',
          [batch.map((item) => item.outboxId)],
        ),
      );
    });
    await meter.record('reference without the ledger', ITEMS);
  } finally {
    await executor.end();
  }
  const { rows } = await owner.query<{ queued: number }>(
    'SELECT count(*)::int AS queued FROM public.payment_outbox_pending',
  );
  if (claimed !== ITEMS || rows[0]?.queued !== 0) {
    throw new Error(
      `expected ${ITEMS} items claimed once and deleted, claimed ${claimed}, ${rows[0]?.queued} queued`,
    );
  }
  await bench.retire(name);
}

const STRIPPED_LEDGER = `reference, not a mode of the relayer: its SQL alone on a ledger stripped to one index (no attempt id, pay-once indexes or checks; the lease fence kept)`;

/**
 * Run as the owner on a copy made for the stripped-ledger reference only: what is left is the
 * least a durable attempt row per item needs (the row and the (outbox_id, attempt_no) index
 * the completion numbers attempts by) under the same lease fence. Its rate bounds what any
 * choice of the ledger's indexes, ids and checks could give the drain.
 */
const LEDGER_STRIPPING = [
  'ALTER TABLE public.payment_outbox_attempts DROP CONSTRAINT payment_outbox_attempts_pkey',
  'DROP INDEX public.ux_attempts_one_dispatched',
  'DROP INDEX public.ux_attempts_one_terminal_per_drive',
  'DROP INDEX public.ix_attempts_failed',
  'ALTER TABLE public.payment_outbox_attempts DISABLE TRIGGER trg_attempts_belong_to_item',
  'ALTER TABLE public.payment_outbox_attempts DISABLE TRIGGER trg_attempts_check_drive',
  "ALTER TABLE public.payment_outbox_attempts ALTER attempt_id SET DEFAULT '00000000-0000-0000-0000-000000000000'",
];

/**
 * The relayer's claim and batch completion driven by plain clients on a queue of N (after
 * `schemaChanges`, run by the owner before the clock starts), every item DISPATCHED once.
 */
async function ownSqlDrain(
  bench: Bench,
  name: string,
  label: string,
  cpuLabel: string,
  schemaChanges: readonly string[] = [],
): Promise<void> {
  const pool = await filledQueue(bench, name, ITEMS);
  for (const statement of schemaChanges) await pool.query(statement);
  const executor = new pg.Pool({ connectionString: bench.relayerUrl(name), max: SQL_CLIENTS });
  await resetStatementTimes(bench, name);
  const meter = await cpuMeter(bench, name, 'bench_relayer');
  try {
    await rate('drain', label, ITEMS, () =>
      claimUntilEmpty(executor, (workerId, claimed) =>
        completeOutboxBatch(
          executor,
          workerId,
          claimed.map((item) => ({
            outboxId: item.outboxId,
            leaseToken: item.leaseToken,
            state: 'DISPATCHED' as const,
            railReference: `ref-${item.outboxId}`,
            railCode: null,
            errorCode: null,
            errorMessage: null,
            latencyMs: 0,
            retryDelaySeconds: null,
          })),
        ),
      ),
    );
    await meter.record(cpuLabel, ITEMS);
  } finally {
    await executor.end();
  }
  await assertAllDispatched(pool, ITEMS);
  await statementTimes(bench, name, cpuLabel, ITEMS);
  await bench.retire(name);
}

const DRAIN_DEFAULTS = `relayer drain, shipped defaults (${DEFAULTS.concurrency} slots, claim ${DEFAULTS.batchSize})`;
const DRAIN_TUNED = `relayer drain, tuned (${TUNED_CONCURRENCY} slots, claim ${TUNED_BATCH})`;
const GRAPHILE_DRAIN_TUNED =
  'graphile-worker drain, tuned (concurrency 24, localQueue 500, batch delays 0)';
const GRAPHILE_DRAIN_DEFAULTS = 'graphile-worker drain, defaults (concurrency 1)';
const HEADLINE_RATIO = 'relayer defaults / graphile-worker tuned';
const HEADLINE_MEDIAN = `ratio, drain: ${HEADLINE_RATIO}, median of ${DRAIN_ROUNDS} rounds`;
const roundLabel = (label: string, round: number) =>
  round === 1 ? label : `${label} (round ${round} of ${DRAIN_ROUNDS})`;

/**
 * The relayer drains N through the real runtime. Round 1 also records where the CPU and the
 * server's time went; later rounds only the rate.
 */
async function relayerDrain(
  bench: Bench,
  mode: { key: string; label: string; settings: Record<string, string> },
  round = 1,
): Promise<number> {
  const name = `bench_drain_${mode.key}_${round}`;
  const pool = await filledQueue(bench, name, ITEMS);
  const detailed = round === 1;
  if (detailed) await resetStatementTimes(bench, name);
  const meter = detailed ? await cpuMeter(bench, name, 'bench_relayer') : undefined;
  const drained = await rate('drain', roundLabel(mode.label, round), ITEMS, () =>
    drainWithRuntime(
      bench,
      name,
      mode.settings,
      outcomesRecorded(ITEMS),
      async () => meter?.record(`relayer ${mode.key}`, ITEMS),
      // The backends and the process as `run` has started, before its first claim returns.
      async (startMs) =>
        meter?.recordSoFar(`relayer ${mode.key}: start-up until run() resolved`, startMs),
    ),
  );
  await assertAllDispatched(pool, ITEMS);
  if (detailed && mode.key === 'defaults') {
    await statementTimes(bench, name, 'relayer defaults', ITEMS);
  }
  await bench.retire(name);
  return drained;
}

/** Adds `count` no-op jobs, in chunks of 1,000, through graphile-worker's own utilities. */
async function addGraphileJobs(connectionString: string, count: number): Promise<void> {
  const { makeWorkerUtils } = await import('graphile-worker');
  const utils = await makeWorkerUtils({ connectionString });
  try {
    for (const chunk of chunks(
      Array.from({ length: count }, (_, n) => n),
      1000,
    )) {
      await utils.addJobs(chunk.map((n) => ({ identifier: 'noop', payload: { n } })));
    }
  } finally {
    await utils.release();
  }
}

/** graphile-worker drains N jobs added beforehand (with its CPU per job in round 1). */
async function graphileDrain(bench: Bench, key: 'tuned' | 'defaults', round = 1): Promise<number> {
  const options = key === 'tuned' ? GRAPHILE_TUNED : GRAPHILE_DEFAULTS;
  const label = key === 'tuned' ? GRAPHILE_DRAIN_TUNED : GRAPHILE_DRAIN_DEFAULTS;
  const database = `bench_graphile_drain_${key}_${round}`;
  const connectionString = await bench.graphile(database);
  await addGraphileJobs(connectionString, ITEMS);
  const meter = round === 1 ? await cpuMeter(bench, database) : undefined;
  const drained = await rate('drain', roundLabel(label, round), ITEMS, () =>
    graphileRun(
      connectionString,
      options,
      ITEMS,
      async () => {},
      undefined,
      async () => meter?.record(`graphile-worker ${key}`, ITEMS),
    ),
  );
  await bench.retire(database);
  return drained;
}

async function drainSection(bench: Bench): Promise<void> {
  console.error('drain');
  const defaults = { key: 'defaults', label: DRAIN_DEFAULTS, settings: {} };
  const headline = {
    relayer: [await relayerDrain(bench, defaults)],
    graphile: [] as number[],
  };
  await relayerDrain(bench, {
    key: 'tuned',
    label: DRAIN_TUNED,
    settings: {
      SYMPHONY_CONCURRENCY: String(TUNED_CONCURRENCY),
      SYMPHONY_BATCH_SIZE: String(TUNED_BATCH),
    },
  });

  // The relayer's own SQL with nothing around it: the ceiling the pipeline is measured against.
  await ownSqlDrain(bench, 'bench_drain_sql', SQL_ALONE, 'relayer SQL alone');
  await ownSqlDrain(
    bench,
    'bench_drain_sql_stripped',
    STRIPPED_LEDGER,
    'stripped ledger',
    LEDGER_STRIPPING,
  );
  await withoutLedgerReference(bench);

  headline.graphile.push(await graphileDrain(bench, 'tuned'));
  await graphileDrain(bench, 'defaults');

  // The machine's speed drifts between drains by more than the goals' margins (issue 9), so
  // the headline pair runs again, back to back, the first to run alternating: each round's
  // ratio compares two drains a few seconds apart, and the median of the rounds is the figure.
  for (let round = 2; round <= DRAIN_ROUNDS; round += 1) {
    const pair = [
      async () => headline.relayer.push(await relayerDrain(bench, defaults, round)),
      async () => headline.graphile.push(await graphileDrain(bench, 'tuned', round)),
    ];
    if (round % 2 === 0) pair.reverse();
    for (const drain of pair) await drain();
  }
  const ratios = headline.relayer.map(
    (relayer, index) => relayer / (headline.graphile[index] ?? NaN),
  );
  ratios.forEach((value, index) =>
    record(
      'drain',
      `ratio, drain: ${HEADLINE_RATIO}, round ${index + 1} of ${DRAIN_ROUNDS}`,
      value,
      'x',
    ),
  );
  record('drain', HEADLINE_MEDIAN, median(ratios), 'x');
}

/** Runs graphile-worker until `count` jobs have succeeded. */
async function graphileRun(
  connectionString: string,
  options: { concurrency: number; preset: Record<string, unknown> },
  count: number,
  task: (payload: unknown) => Promise<void>,
  started?: () => void,
  beforeStop?: () => Promise<void>,
): Promise<void> {
  const { run, Logger } = await import('graphile-worker');
  let done = 0;
  let finish: () => void = () => {};
  const allDone = new Promise<void>((resolve) => (finish = resolve));
  const runner = await run({
    connectionString,
    concurrency: options.concurrency,
    noHandleSignals: true,
    logger: new Logger(() => () => {}),
    preset: { worker: options.preset },
    taskList: { noop: task },
  });
  runner.events.on('job:success', () => {
    firstOutcome();
    done += 1;
    if (done === count) finish();
  });
  started?.();
  await allDone;
  await beforeStop?.();
  await runner.stop();
}

/**
 * How `symphony-relay run` is started: as the image runs it (the JavaScript `npm run build`
 * compiles into dist/, no TypeScript loader) and as a checkout runs it (bin/ registers tsx,
 * whose loader thread and compiler stay in the process).
 */
const RUN_FORMS = [
  {
    key: 'compiled',
    label: 'compiled, as the image runs it (node dist/cli/main.js run)',
    entry: DIST_CLI,
  },
  {
    key: 'checkout',
    label: 'in a checkout through tsx (node bin/symphony-relay.js run)',
    entry: CLI,
  },
] as const;

async function rssSection(bench: Bench): Promise<void> {
  console.error('rss');
  execFileSync('npm', ['run', '-s', 'build'], { stdio: 'inherit' });
  for (const form of RUN_FORMS) {
    const name = `bench_rss_${form.key}`;
    const pool = await filledQueue(bench, name, ITEMS);
    const child = spawn(process.execPath, [form.entry, 'run'], {
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        DATABASE_URL: bench.relayerUrl(name),
        SYMPHONY_WORKER_ID: name,
        SYMPHONY_HTTP_PORT: '0',
        SYMPHONY_RAILS: NO_OP_RAILS,
        LOG_LEVEL: 'warn',
      },
      stdio: 'ignore',
    });
    await measureWorkerProcess(
      child,
      {
        startup: `relayer RSS at start-up (peak until its first attempt), ${form.label}`,
        peak: `relayer peak RSS, draining N at shipped defaults, ${form.label}`,
        drain: `relayer drain as that process, ${form.label}`,
      },
      attemptsReached(pool, 1),
      queueEmpty(pool),
    );
    await assertAllDispatched(pool, ITEMS);
    await bench.retire(name);
  }
  // graphile-worker as a process of its own, with the same options as its drains.
  for (const [key, options] of [
    ['tuned', GRAPHILE_TUNED],
    ['defaults', GRAPHILE_DEFAULTS],
  ] as const) {
    const database = `bench_rss_graphile_${key}`;
    const connectionString = await bench.graphile(database);
    await addGraphileJobs(connectionString, ITEMS);
    const jobs = new pg.Client({ connectionString });
    await jobs.connect();
    try {
      const child = spawn(process.execPath, [GRAPHILE_PROCESS], {
        env: {
          PATH: process.env.PATH,
          HOME: process.env.HOME,
          DATABASE_URL: connectionString,
          GRAPHILE_OPTIONS: JSON.stringify(options),
        },
        stdio: 'ignore',
      });
      await measureWorkerProcess(
        child,
        {
          startup: `${GRAPHILE_RSS_STARTUP}, ${key}`,
          peak: `${GRAPHILE_RSS_PEAK}, ${key}`,
          drain: `graphile-worker drain as that process, ${key}`,
        },
        graphileJobDone(jobs),
        graphileQueueEmpty(jobs),
      );
    } finally {
      await jobs.end();
    }
    await bench.retire(database);
  }
}

const GRAPHILE_RSS_STARTUP = 'graphile-worker RSS at start-up (peak until its first job is done)';
const GRAPHILE_RSS_PEAK = 'graphile-worker peak RSS, draining N';

/**
 * The peak RSS (VmHWM) of a worker process the bench started: at start-up, until `started`
 * says it has done its first item, and once `empty` says it has done them all; with its drain
 * rate between the two. Stops it with SIGTERM.
 */
async function measureWorkerProcess(
  child: ChildProcess,
  labels: { startup: string; peak: string; drain: string },
  started: () => Promise<boolean>,
  empty: () => Promise<boolean>,
): Promise<void> {
  let exitCode: number | null | undefined;
  const exited = new Promise((resolve) =>
    child.once('exit', (code) => {
      exitCode = code;
      resolve(code);
    }),
  );
  const status = () => readFileSync(`/proc/${child.pid}/status`, 'utf8');
  const megabytes = (field: string, text: string) =>
    Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(text)?.[1] ?? Number.NaN) / 1024;
  const until = async (done: () => Promise<boolean>) => {
    while (!(await done())) {
      if (exitCode !== undefined) {
        throw new Error(
          `bench: ${labels.drain}: the process exited (code ${exitCode}) before it was done`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  try {
    // The drain rate counts from the first item done, so start-up is not in it.
    await until(started);
    const idle = megabytes('VmHWM', status());
    const drainStarted = process.hrtime.bigint();
    await until(empty);
    const seconds = Number(process.hrtime.bigint() - drainStarted) / 1e9;
    record('rss', labels.startup, idle, 'MB');
    record('rss', labels.peak, megabytes('VmHWM', status()), 'MB');
    record('rss', labels.drain, ITEMS / seconds, 'items/s');
  } finally {
    if (exitCode === undefined) child.kill('SIGTERM');
    await exited;
  }
}

/**
 * graphile-worker deletes a job once done. Its first 500 by id are the first it runs (the
 * jobs were added in id order, and a local queue fetches at most 500): one of them gone is
 * its first job done, counted through the primary key instead of counting the whole queue.
 */
const graphileJobDone = (client: pg.Client) => {
  let first: string | undefined;
  return async () => {
    first ??= (
      await client.query<{ first: string }>(
        'SELECT min(id)::text AS first FROM graphile_worker._private_jobs',
      )
    ).rows[0]?.first;
    const { rows } = await client.query<{ left: number }>(
      `SELECT count(*)::int AS left FROM graphile_worker._private_jobs
        WHERE id BETWEEN $1::bigint AND $1::bigint + 499`,
      [first],
    );
    return (rows[0]?.left ?? 0) < Math.min(500, ITEMS);
  };
};

const graphileQueueEmpty = (client: pg.Client) => async () => {
  const { rows } = await client.query<{ pending: boolean }>(
    'SELECT EXISTS (SELECT 1 FROM graphile_worker._private_jobs) AS pending',
  );
  return !rows[0]?.pending;
};

/** A loopback rail that records when each delivery arrived, keyed by the item's key. */
async function loopbackRail() {
  const arrivals = new Map<string, number>();
  const server = http.createServer((request, response) => {
    const key = request.headers['idempotency-key'];
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => {
      const at = performance.now();
      const id = typeof key === 'string' ? key : String((JSON.parse(body) as { key: string }).key);
      if (!arrivals.has(id)) arrivals.set(id, at);
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ reference: `ref-${id}` }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/pay`;
  return { url, arrivals, close: () => new Promise((resolve) => server.close(resolve)) };
}

/** Enqueues `perSecond` items a second for `seconds`, one call each, every 5 ms. */
async function paced(
  perSecond: number,
  seconds: number,
  enqueue: (n: number) => Promise<unknown>,
  sentAt: Map<string, number>,
  keyOf: (n: number) => string,
): Promise<number> {
  const total = perSecond * seconds;
  const tickMs = 5;
  const started = performance.now();
  const pending: Promise<unknown>[] = [];
  let n = 0;
  while (n < total) {
    const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * perSecond));
    for (; n < due; n += 1) {
      // From the enqueue's commit: when the producer itself falls behind (a loaded machine),
      // its own queueing is not counted as delivery latency.
      const key = keyOf(n);
      pending.push(enqueue(n).then(() => sentAt.set(key, performance.now())));
    }
    await new Promise((resolve) => setTimeout(resolve, tickMs));
  }
  await Promise.all(pending);
  return total;
}

async function waitForArrivals(arrivals: Map<string, number>, count: number): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (arrivals.size < count) {
    if (Date.now() > deadline) throw new Error(`only ${arrivals.size} of ${count} arrived`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function latencies(sentAt: Map<string, number>, arrivals: Map<string, number>): number[] {
  // A delivery can arrive before the producer has seen its own commit return: counted as 0.
  return [...sentAt]
    .map(([key, at]) => Math.max(0, (arrivals.get(key) ?? Number.NaN) - at))
    .sort((a, b) => a - b);
}

async function latencySection(bench: Bench): Promise<void> {
  console.error('latency');
  for (const perSecond of [200, 1000]) {
    const rail = await loopbackRail();
    try {
      const name = `bench_latency_${perSecond}`;
      const pool = await bench.symphony(name);
      const runtime = await startRuntime(
        {
          DATABASE_URL: bench.relayerUrl(name),
          SYMPHONY_WORKER_ID: name,
          SYMPHONY_HTTP_PORT: '0',
          SYMPHONY_RAILS: JSON.stringify({ bank: { type: 'http', url: rail.url } }),
          LOG_LEVEL: 'silent',
        },
        createLogger({ level: 'silent', name: 'bench' }),
      );
      const sentAt = new Map<string, number>();
      try {
        // Warm-up, not measured: both systems' connections, plans and code paths are hot
        // before the measured run (the first claims of a fresh backend plan their statements).
        const warm = await paced(
          perSecond,
          LATENCY_WARMUP_SECONDS,
          (n) => enqueuePaymentOutbox(pool, request(`${name}_warm`, n, 'bank')),
          new Map(),
          (n) => `${name}_warm-key-${n}`,
        );
        await waitForArrivals(rail.arrivals, warm);
        measuring();
        const total = await paced(
          perSecond,
          LATENCY_SECONDS,
          (n) => enqueuePaymentOutbox(pool, request(name, n, 'bank')),
          sentAt,
          (n) => `${name}-key-${n}`,
        );
        await waitForArrivals(rail.arrivals, warm + total);
      } finally {
        await runtime.stop();
      }
      const sorted = latencies(sentAt, rail.arrivals);
      record('latency', `relayer defaults, ${perSecond}/s, p50`, percentile(sorted, 50), 'ms');
      record('latency', `relayer defaults, ${perSecond}/s, p99`, percentile(sorted, 99), 'ms');
      await bench.retire(name);
    } finally {
      await rail.close();
    }

    await graphileLatency(bench, perSecond, 'tuned');
    await graphileLatency(bench, perSecond, 'defaults');
  }
}

/**
 * graphile-worker's enqueue commit → arrival at a loopback rail at `perSecond`, tuned or at its
 * defaults, after one unmeasured second of the same traffic.
 */
async function graphileLatency(
  bench: Bench,
  perSecond: number,
  key: 'tuned' | 'defaults',
): Promise<void> {
  const database = `bench_graphile_latency_${key}_${perSecond}`;
  const peerRail = await loopbackRail();
  try {
    const connectionString = await bench.graphile(database);
    const producer = new pg.Pool({ connectionString, max: ENQUEUE_CONNECTIONS });
    const sentAt = new Map<string, number>();
    const keyOf = (n: number) => `graphile-${key}-${perSecond}-key-${n}`;
    let ready: () => void = () => {};
    const running = new Promise<void>((resolve) => (ready = resolve));
    // The same HTTP client as the relayer's http rail (undici's request API, one Agent),
    // so the two differ only in the queue, not in how they speak HTTP.
    const agent = new Agent();
    const target = new URL(peerRail.url);
    const worker = graphileRun(
      connectionString,
      key === 'tuned' ? GRAPHILE_TUNED : GRAPHILE_DEFAULTS,
      perSecond * (LATENCY_WARMUP_SECONDS + LATENCY_SECONDS),
      async (payload) => {
        const response = await agent.request({
          origin: target.origin,
          path: target.pathname,
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(payload),
        });
        await response.body.text();
      },
      () => ready(),
    );
    await running;
    try {
      const addJob = (jobKey: string) =>
        producer.query(`SELECT graphile_worker.add_job('noop', $1::json)`, [
          JSON.stringify({ key: jobKey, amount: '10.00', currency: 'ZMW' }),
        ]);
      const warmKey = (n: number) => `graphile-${key}-${perSecond}-warm-key-${n}`;
      const warm = await paced(
        perSecond,
        LATENCY_WARMUP_SECONDS,
        (n) => addJob(warmKey(n)),
        new Map(),
        warmKey,
      );
      await waitForArrivals(peerRail.arrivals, warm);
      measuring();
      const total = await paced(perSecond, LATENCY_SECONDS, (n) => addJob(keyOf(n)), sentAt, keyOf);
      await waitForArrivals(peerRail.arrivals, warm + total);
      await worker;
    } finally {
      await producer.end();
      await agent.close();
    }
    const sorted = latencies(sentAt, peerRail.arrivals);
    record('latency', `graphile-worker ${key}, ${perSecond}/s, p50`, percentile(sorted, 50), 'ms');
    record('latency', `graphile-worker ${key}, ${perSecond}/s, p99`, percentile(sorted, 99), 'ms');
    await bench.retire(database);
  } finally {
    await peerRail.close();
  }
}

/**
 * The plans of every statement inside six claims of 256 (custom and generic plans), rolled
 * back: does the claim stay on the indexes at this table size?
 */
async function claimPlanCounts(bench: Bench, database: string) {
  const { plans } = await onDatabase(bench, database, (client) => claimPlans(client));
  return {
    statements: plans.length,
    fullReads: plans.filter(readsWhole).length,
    sorts: plans.filter(sortsDueRows).length,
  };
}

/** The mean time of a new connection's first five claims of 256 (custom plans), rolled back. */
async function firstClaimsMs(bench: Bench, database: string): Promise<number> {
  return onDatabase(bench, database, async (client) => {
    await client.query('BEGIN');
    try {
      const started = process.hrtime.bigint();
      for (let call = 0; call < 5; call += 1) {
        await claimOutboxBatch(client, {
          batchSize: 256,
          workerId: 'bench-first-claims',
          leaseSeconds: 30,
          railTypes: ['sandbox'],
        });
      }
      return Number(process.hrtime.bigint() - started) / 1e6 / 5;
    } finally {
      await client.query('ROLLBACK');
    }
  });
}

/** L rows straight into the item record and the queue (as the owner: setup, not measured). */
async function bulkRows(
  pool: pg.Pool,
  prefix: string,
  rowsCount: number,
  dueIn: string,
  beforeAnalyze?: () => Promise<void>,
  railType = 'sandbox',
) {
  // Autovacuum stays off the two tables until the rows are in (and `beforeAnalyze` has
  // looked at them): what runs there sees a queue without statistics, as a burst does.
  const tables = 'public.payment_outbox_pending, public.payment_outbox_items';
  for (const table of tables.split(', ')) {
    await pool.query(`ALTER TABLE ${table} SET (autovacuum_enabled = false)`);
  }
  await pool.query(
    `INSERT INTO public.payment_outbox_items
       (outbox_id, instruction_id, participant_id, sequence_id, idempotency_key, rail_type,
        payload, payload_sha256)
     SELECT uuidv7(), $1 || '-' || g, $1 || '-participant-' || (g % 1000), g, $1 || '-key-' || g,
            $3, jsonb_build_object('n', g), repeat('0', 64)
       FROM generate_series(1, $2::int) AS g`,
    [prefix, rowsCount, railType],
  );
  await pool.query(
    `INSERT INTO public.payment_outbox_pending
       (outbox_id, participant_id, sequence_id, rail_type, next_attempt_at)
     SELECT i.outbox_id, i.participant_id, i.sequence_id, i.rail_type, now() + $2::interval
       FROM public.payment_outbox_items i WHERE i.instruction_id LIKE $1 || '-%'`,
    [prefix, dueIn],
  );
  await beforeAnalyze?.();
  for (const table of tables.split(', ')) {
    await pool.query(`ALTER TABLE ${table} RESET (autovacuum_enabled)`);
  }
  await pool.query(`VACUUM ANALYZE ${tables}`);
}

async function scaleSection(bench: Bench): Promise<void> {
  console.error('scale');
  // Each drain with L rows is paired with a drain of N with nothing else, back to back, the
  // first to run alternating: this machine's speed drifts by more than the 10 % the goal
  // allows between drains minutes apart, while two drains seconds apart share its phase. A
  // case's ratio is the mean of its two pairs' ratios.
  const drainOnce = (database: string, label: string) =>
    rate('scale', label, ITEMS, () =>
      drainWithRuntime(bench, database, {}, outcomesRecorded(ITEMS)),
    );
  let aloneDrains = 0;
  const drainAlone = async () => {
    aloneDrains += 1;
    const database = `bench_scale_small_${aloneDrains}`;
    await filledQueue(bench, database, ITEMS);
    const drained = await drainOnce(
      database,
      `relayer drain at defaults, N due, nothing else (drain ${aloneDrains} of 4)`,
    );
    await bench.retire(database);
    return drained;
  };
  /** `withLarge` (a drain with L rows) over a drain with nothing else run beside it. */
  const paired = async (pair: number, withLarge: () => Promise<number>) => {
    if (pair % 2 === 1) {
      const alone = await drainAlone();
      return (await withLarge()) / alone;
    }
    const large = await withLarge();
    return large / (await drainAlone());
  };

  const future = await bench.symphony('bench_scale_future');
  await bulkRows(future, 'future', LARGE, '1 day');
  const withFuture: number[] = [];
  for (const round of [1, 2]) {
    withFuture.push(
      await paired(round, async () => {
        await fanOut(
          future,
          ENQUEUE_CONNECTIONS,
          chunks(requests(`due-${round}`, ITEMS), ENQUEUE_CHUNK),
          (c, chunk) => enqueuePaymentOutboxBatch(c, chunk),
        );
        return drainOnce(
          'bench_scale_future',
          `relayer drain at defaults, N due behind ${LARGE} not yet due (drain ${round} of 2)`,
        );
      }),
    );
  }
  await recordClaimScans(bench, 'bench_scale_future', `${LARGE} not yet due`);
  await bench.retire('bench_scale_future');

  const due = await bench.symphony('bench_scale_due');
  await bulkRows(due, 'due', LARGE, '-1 minute', async () => {
    const plans = await claimPlanCounts(bench, 'bench_scale_due');
    record(
      'scale',
      `claim of 256 with ${LARGE} due, never analyzed: plans sorting the due rows, of ${plans.statements} planned statements (auto_explain, 6 calls)`,
      plans.sorts,
      'plans',
    );
    record(
      'scale',
      `claim of 256 with ${LARGE} due, never analyzed: a new connection's first five claims, mean`,
      await firstClaimsMs(bench, 'bench_scale_due'),
      'ms',
    );
  });
  record(
    'scale',
    `claim of 256 with ${LARGE} due, analyzed: a new connection's first five claims, mean`,
    await firstClaimsMs(bench, 'bench_scale_due'),
    'ms',
  );
  const withDue = [
    await paired(3, () =>
      drainOnce('bench_scale_due', `relayer drain at defaults, first N of ${LARGE} due`),
    ),
    await paired(4, () =>
      drainOnce('bench_scale_due', `relayer drain at defaults, next N of ${LARGE} due`),
    ),
  ];
  await recordClaimScans(bench, 'bench_scale_due', `${LARGE} due`);

  const executor = new pg.Pool({
    connectionString: bench.relayerUrl('bench_scale_due'),
    max: 1,
  });
  try {
    const timedQuery = async (label: string, sql: string) => {
      const started = process.hrtime.bigint();
      const { rows } = await executor.query<{ pending: string; estimated?: boolean }>(sql);
      record('scale', label, Number(process.hrtime.bigint() - started) / 1e6, 'ms');
      return rows[0];
    };
    const exact = await timedQuery(
      `outbox_queue_stats() exact scan at ${LARGE} rows`,
      'SELECT * FROM public.outbox_queue_stats()',
    );
    await timedQuery(
      `outbox_queue_sample, taking the sample at ${LARGE} rows, counted exactly (bound raised past the queue)`,
      'SELECT * FROM public.outbox_queue_sample(0, 1000000)',
    );
    const sample = await timedQuery(
      `outbox_queue_sample(5000), taking the sample at ${LARGE} rows at the shipped bound (one worker per fleet per interval)`,
      'SELECT * FROM public.outbox_queue_sample(0)',
    );
    record(
      'scale',
      `outbox_queue_sample at the shipped bound: pending ${sample?.estimated ? 'estimated' : 'counted'} / exact`,
      Number(sample?.pending) / Number(exact?.pending),
      'x',
    );
    await timedQuery(
      `outbox_queue_sample(5000), reading the shared sample (every other worker)`,
      'SELECT * FROM public.outbox_queue_sample(3600000)',
    );
  } finally {
    await executor.end();
  }
  await bench.retire('bench_scale_due');
  const mean = (values: number[]) => values.reduce((sum, value) => sum + value, 0) / values.length;
  for (const [what, ratios] of [
    [`${LARGE} not yet due`, withFuture],
    [`${LARGE} due`, withDue],
  ] as const) {
    ratios.forEach((value, index) =>
      record('scale', `ratio: ${what} / nothing else, pair ${index + 1} of 2`, value, 'x'),
    );
    record(
      'scale',
      `ratio: ${what} / nothing else (mean of two pairs, each two drains back to back)`,
      mean(ratios),
      'x',
    );
  }
  await heldBackCase(bench);
}

/** Records whether any statement of a claim of 256 read the whole queue or item record. */
async function recordClaimScans(bench: Bench, database: string, rowsLabel: string) {
  const plans = await claimPlanCounts(bench, database);
  record(
    'scale',
    `claim of 256 with ${rowsLabel}: sequential or bitmap scans of the queue or item record in ${plans.statements} planned statements (auto_explain, 6 calls)`,
    plans.fullReads,
    'scans',
  );
}

/**
 * N due items behind L due ones that are held back: on the relayer a paused rail (an operator
 * stopped a misbehaving bank; the worker serves it too), on graphile-worker jobs of a task the
 * worker does not run (it has no pause; this is its closest case). Both drain N at the same
 * settings as their main drains, in the same run.
 */
async function heldBackCase(bench: Bench): Promise<void> {
  const held = await bench.symphony('bench_scale_held');
  await bulkRows(held, 'held', LARGE, '-1 minute', undefined, 'held');
  await held.query(`SELECT * FROM public.pause_dispatch('rail', 'held', 'bench: held back')`);
  await fanOut(
    held,
    ENQUEUE_CONNECTIONS,
    chunks(requests('held-due', ITEMS), ENQUEUE_CHUNK),
    (c, chunk) => enqueuePaymentOutboxBatch(c, chunk),
  );
  const relayer = await rate(
    'scale',
    `relayer drain at defaults, N due behind ${LARGE} due on a paused rail`,
    ITEMS,
    () =>
      drainWithRuntime(
        bench,
        'bench_scale_held',
        { SYMPHONY_RAILS: HELD_BACK_RAILS },
        outcomesRecorded(ITEMS),
      ),
  );
  await bench.retire('bench_scale_held');

  const connectionString = await bench.graphile('bench_graphile_scale_held');
  const peer = new pg.Pool({ connectionString, max: 1 });
  try {
    for (let from = 1; from <= LARGE; from += 100_000) {
      await peer.query(
        `SELECT graphile_worker.add_jobs(array_agg(
           ('held', json_build_object('n', n), null, now() - interval '1 minute',
            null, null, null, null)::graphile_worker.job_spec))
           FROM generate_series($1::int, $2::int) AS n`,
        [from, Math.min(LARGE, from + 99_999)],
      );
    }
    await peer.query(
      `SELECT graphile_worker.add_jobs(array_agg(
         ('noop', json_build_object('n', n), null, null, null, null, null, null)::graphile_worker.job_spec))
         FROM generate_series(1, $1::int) AS n`,
      [ITEMS],
    );
    await peer.query('VACUUM ANALYZE');
  } finally {
    await peer.end();
  }
  const graphile = await rate(
    'scale',
    `graphile-worker tuned, N due behind ${LARGE} due jobs of a task it does not run`,
    ITEMS,
    () => graphileRun(connectionString, GRAPHILE_TUNED, ITEMS, async () => {}),
  );
  await bench.retire('bench_graphile_scale_held');
  record(
    'scale',
    `ratio: relayer / graphile-worker, N behind ${LARGE} held back`,
    relayer / graphile,
    'x',
  );
}

function printTable(): void {
  const value = (name: string) => rows.find((row) => row.name === name)?.value ?? Number.NaN;
  const ratio = (label: string, over: string, under: string) =>
    `| ${label} | ${formatted(value(over) / value(under), 'x')}x |`;
  const lines = [
    '',
    `| section | measurement (N = ${ITEMS}, L = ${LARGE}) | value | load (1/5/15 min) | autovacuum running (100 ms samples) |`,
    '| --- | --- | ---: | --- | --- |',
    ...rows.map(
      (row) =>
        `| ${row.section} | ${row.name} | ${formatted(row.value, row.unit)} ${row.unit} | ${row.load} | ${row.autovacuum} |`,
    ),
    '',
    '| ratio | value |',
    '| --- | ---: |',
    `| drain: ${HEADLINE_RATIO}, median of ${DRAIN_ROUNDS} rounds (each two drains back to back) | ${formatted(value(HEADLINE_MEDIAN), 'x')}x |`,
    ratio(`drain: ${HEADLINE_RATIO}, round 1`, DRAIN_DEFAULTS, GRAPHILE_DRAIN_TUNED),
    ratio('drain: relayer tuned / graphile-worker tuned', DRAIN_TUNED, GRAPHILE_DRAIN_TUNED),
    ratio(
      'drain after start-up (from the first outcome): relayer defaults / graphile-worker tuned',
      `${DRAIN_DEFAULTS}: rate after its first outcome`,
      `${GRAPHILE_DRAIN_TUNED}: rate after its first outcome`,
    ),
    ratio('drain: relayer tuned / its own SQL alone', DRAIN_TUNED, SQL_ALONE),
    ratio(
      'drain: its own SQL alone / the same claims without the ledger',
      SQL_ALONE,
      WITHOUT_LEDGER,
    ),
    ratio(
      'drain: its own SQL on the stripped ledger (reference) / graphile-worker tuned',
      STRIPPED_LEDGER,
      GRAPHILE_DRAIN_TUNED,
    ),
    ratio('drain: its own SQL alone / on the stripped ledger', SQL_ALONE, STRIPPED_LEDGER),
    ratio(
      'drain: relayer defaults / graphile-worker defaults',
      DRAIN_DEFAULTS,
      GRAPHILE_DRAIN_DEFAULTS,
    ),
    ratio(
      'enqueue: relayer batch / graphile-worker WorkerUtils.addJobs',
      `relayer enqueue, batches of ${ENQUEUE_CHUNK}`,
      GRAPHILE_ADD_JOBS,
    ),
    ratio(
      'enqueue: relayer batch / graphile-worker add_jobs with payloads built by the server (reference)',
      `relayer enqueue, batches of ${ENQUEUE_CHUNK}`,
      GRAPHILE_ADD_JOBS_SERVER_BUILT,
    ),
    ratio(
      'enqueue: relayer single / graphile-worker add_job',
      'relayer enqueue, one call per item',
      'graphile-worker add_job with job_key, one call per job',
    ),
    ratio(
      'RSS, peak while draining N: relayer defaults compiled / graphile-worker tuned (lower is better)',
      `relayer peak RSS, draining N at shipped defaults, ${RUN_FORMS[0].label}`,
      `${GRAPHILE_RSS_PEAK}, tuned`,
    ),
    ratio(
      'RSS, peak while draining N: relayer defaults compiled / graphile-worker defaults (lower is better)',
      `relayer peak RSS, draining N at shipped defaults, ${RUN_FORMS[0].label}`,
      `${GRAPHILE_RSS_PEAK}, defaults`,
    ),
    ratio(
      'latency 1,000/s p99: relayer / graphile-worker (lower is better)',
      'relayer defaults, 1000/s, p99',
      'graphile-worker tuned, 1000/s, p99',
    ),
    '',
    `node ${process.version}, ${os.cpus().length} CPUs; sandbox rail latency 0 for drains; ` +
      `enqueue with ${ENQUEUE_CONNECTIONS} connections; NaN = section not run`,
  ];
  console.log(lines.join('\n'));
}

await main();
