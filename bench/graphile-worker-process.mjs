// graphile-worker as a worker process of its own, for the bench's RSS section: its run() with
// a no-op task and the options the bench passes (GRAPHILE_OPTIONS, JSON: concurrency and the
// worker preset), on DATABASE_URL, until SIGTERM. Plain JavaScript, so that no TypeScript
// loader sits in the process whose memory is measured: the relayer's figure it is compared
// with is its compiled form, which has none either.
import process from 'node:process';
import { Logger, run } from 'graphile-worker';

const { concurrency, preset } = JSON.parse(process.env.GRAPHILE_OPTIONS ?? '{}');
const runner = await run({
  connectionString: process.env.DATABASE_URL,
  concurrency,
  noHandleSignals: true,
  logger: new Logger(() => () => {}),
  preset: { worker: preset },
  taskList: { noop: async () => {} },
});
process.once('SIGTERM', () => {
  runner.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
