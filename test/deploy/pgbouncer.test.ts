import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.ts';
import { uniquePrefix } from '../support/outbox-fixtures.ts';
import { startPgBouncer, type PoolMode } from '../support/pgbouncer.ts';
import { startRailServer } from '../support/rail-server.ts';
import {
  httpRails,
  relayerDatabase,
  spawnRelayer,
  waitForAllTerminal,
  waitForLog,
} from '../support/relayer.ts';

const ITEMS = 20;

describe.each<PoolMode>(['transaction', 'session'])('through PgBouncer in %s pooling', (mode) => {
  it('enqueue, status and the relayer work with no startup parameter, and an unswitched login is refused', async () => {
    const target = await relayerDatabase();
    const producer = await target.db.createLoginRole(['symphony_ingest']);
    const reader = await target.db.createLoginRole(['symphony_readonly']);
    // A member whose sessions are not switched to the runtime role (no role-level default).
    const unswitched = await target.db.createLoginRole(['symphony_executor'], {
      sessionRole: null,
    });
    const bouncer = await startPgBouncer({
      mode,
      databaseUrl: target.db.ownerUrl,
      users: [target.login, producer, reader, unswitched],
    });
    const rail = await startRailServer();
    const dir = await mkdtemp(path.join(os.tmpdir(), 'symphony-pgbouncer-items-'));
    try {
      const prefix = uniquePrefix(`bouncer-${mode}`);
      const file = path.join(dir, 'items.jsonl');
      await writeFile(
        file,
        Array.from({ length: ITEMS }, (_, index) =>
          JSON.stringify({
            instructionId: `${prefix}-${index}`,
            participantId: `${prefix}-participant`,
            idempotencyKey: `key-${index}`,
            railType: 'bank',
            payload: { amount: '1.00' },
          }),
        ).join('\n'),
      );
      const enqueued = await runCli(['enqueue', '--file', file], {
        DATABASE_URL: bouncer.url(producer.name, producer.password),
      });
      expect(enqueued.code, enqueued.stderr).toBe(0);

      const relayer = spawnRelayer(
        target.env({
          DATABASE_URL: bouncer.url(target.login.name, target.login.password),
          SYMPHONY_RAILS: httpRails(rail.url),
          // LISTEN needs a session of its own: poll-only behind a transaction pooler.
          SYMPHONY_POLL_ONLY: mode === 'transaction' ? 'true' : 'false',
          SYMPHONY_POLL_INTERVAL_MS: '200',
          LOG_LEVEL: 'info',
        }),
      );
      try {
        await waitForLog(relayer, '"event":"worker_started"');
        await waitForAllTerminal(target.db, ITEMS);
        const { rows } = await target.db.owner.query<{ state: string; n: number }>(
          `SELECT state::text, count(*)::int AS n FROM payment_outbox_attempts GROUP BY state`,
        );
        expect(rows).toEqual([{ state: 'DISPATCHED', n: ITEMS }]);
        expect(rail.requests).toHaveLength(ITEMS);
        expect(relayer.output()).toContain(`"pollOnly":${mode === 'transaction'}`);
        relayer.child.kill('SIGTERM');
        expect(await relayer.exited).toMatchObject({ code: 0 });
      } finally {
        relayer.child.kill('SIGKILL');
      }

      const status = await runCli(['status', '--json'], {
        DATABASE_URL: bouncer.url(reader.name, reader.password),
      });
      expect(status.code, status.stderr).toBe(0);
      expect(JSON.parse(status.stdout)).toMatchObject({ pending: 0 });

      // Fails closed: through PgBouncer too, a login that would run as itself is refused.
      const refused = spawnRelayer(
        target.env({ DATABASE_URL: bouncer.url(unswitched.name, unswitched.password) }),
      );
      expect(await refused.exited).toMatchObject({ code: 1 });
      expect(refused.output()).toContain(
        `sessions of database role "${unswitched.name}" act as "${unswitched.name}", not symphony_executor`,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
      await rail.close();
      await bouncer.stop();
    }
  });
});
