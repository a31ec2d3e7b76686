import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { waitUntil } from '../support/processes.ts';
import { spawnRelayer } from '../support/relayer.ts';

describe('symphony-relay local (npm start)', () => {
  it('shows payments flowing on an embedded PostgreSQL 18, and Ctrl-C stops everything with exit 0', async () => {
    const dataDir = path.join(os.tmpdir(), `symphony-local-${process.pid}-${Date.now()}`);
    const local = spawnRelayer({ SYMPHONY_HTTP_PORT: '0', SYMPHONY_POLL_INTERVAL_MS: '1000' }, [
      'local',
      '--rate',
      '200',
      '--data-dir',
      dataDir,
    ]);
    try {
      const dispatched = await waitUntil(
        async () => {
          const counts = [...local.output().matchAll(/progress: dispatched=(\d+)/g)].map((m) =>
            Number(m[1]),
          );
          const last = counts.at(-1);
          return last !== undefined && last > 0 ? last : undefined;
        },
        {
          description: `a progress line with payments dispatched (output: ${local.output().slice(-1500)})`,
          attempts: 240,
        },
      );
      expect(dispatched).toBeGreaterThan(0);
      // The first line that counts dispatches shows a rate, not 0.0/s.
      const firstWithDispatches = /progress: dispatched=[1-9]\d* .*rate=([\d.]+)\/s/.exec(
        local.output(),
      );
      expect(Number(firstWithDispatches?.[1])).toBeGreaterThan(0);
      expect(local.output()).toMatch(/migrated; policy seeded; relayer local-1 running/);

      local.child.kill('SIGINT');
      const exit = await local.exited;
      expect({ exit, output: local.output().slice(-1500) }).toMatchObject({ exit: { code: 0 } });
      // The producer finishes its enqueue before its pool ends.
      expect(local.output()).not.toMatch(/Cannot use a pool|pool_error|demo_enqueue_failed/);
      // The embedded PostgreSQL was stopped too: its pid file is gone.
      await waitUntil(
        async () => {
          return existsSync(path.join(dataDir, 'postmaster.pid')) ? undefined : true;
        },
        { description: 'postmaster.pid removed' },
      );
    } finally {
      local.child.kill('SIGKILL');
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
