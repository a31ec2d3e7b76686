/**
 * `npm run chaos`: the relayer under faults, end to end on loopback. Prints one JSON report
 * on stdout (progress on stderr) and exits 1 when an invariant failed, 2 on bad options.
 */
import { OptionsError, parseChaosArgs, USAGE } from './options.ts';
import { runChaos } from './runner.ts';

async function main(): Promise<number> {
  let config;
  try {
    config = parseChaosArgs(process.argv.slice(2));
  } catch (error) {
    if (error instanceof OptionsError) {
      process.stderr.write(`chaos: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  if (config === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const started = Date.now();
  const report = await runChaos(config, (line) =>
    process.stderr.write(`chaos: [${Math.round((Date.now() - started) / 1000)} s] ${line}\n`),
  );
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  if (!report.ok) {
    const failed = Object.entries(report.checks)
      .filter(([, passed]) => !passed)
      .map(([name]) => name);
    process.stderr.write(`chaos: FAILED invariants: ${failed.join(', ')}\n`);
    return 1;
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: Error) => {
    process.stderr.write(`chaos: the run could not complete: ${error.message}\n`);
    process.exit(1);
  },
);
