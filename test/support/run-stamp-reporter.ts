/**
 * A Vitest reporter that writes what the JSON report does not say: the commit that was
 * tested. `npm test` runs it next to `--reporter=json --outputFile.json=…`; it writes
 * `<report>.run.json` (src/evidence/test-report.ts) when the run starts, so a run that fails
 * or is cut short still has its stamp. `symphony-relay evidence` reads both.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Reporter, Vitest } from 'vitest/node';
import { sourceCommit } from '../../src/build-info.ts';
import { stampFileFor, type TestRunStamp } from '../../src/evidence/test-report.ts';

export default class RunStampReporter implements Reporter {
  onInit(vitest: Vitest): void {
    const { outputFile, root } = vitest.config;
    const report = typeof outputFile === 'string' ? outputFile : outputFile?.json;
    if (!report) {
      throw new Error(
        'run-stamp reporter: no JSON report to stamp; pass --reporter=json --outputFile.json=<file> too',
      );
    }
    // The JSON reporter resolves its file against the root, and the tested code is the root's.
    const stamp: TestRunStamp = { startTime: Date.now(), ...sourceCommit(process.env, root) };
    const file = stampFileFor(path.resolve(root, report));
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, `${JSON.stringify(stamp)}\n`);
  }
}
