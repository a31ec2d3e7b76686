import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './paths.ts';

/**
 * The README's `sh` blocks, each with the marker on the line before its fence:
 * `<!-- readme-test: run -->` (a test executes it as written) or
 * `<!-- readme-test: skip (why) -->` (it cannot run here, e.g. it runs the whole suite).
 */
export interface ShellBlock {
  line: number;
  marker: string | undefined;
  script: string;
}

export function shellBlocks(readme: string): ShellBlock[] {
  const lines = readme.split('\n');
  const blocks: ShellBlock[] = [];
  for (let index = 0; index < lines.length; index++) {
    if (lines[index] !== '```sh') continue;
    const end = lines.indexOf('```', index + 1);
    const marker = /^<!-- readme-test: (.*) -->$/.exec(lines[index - 1] ?? '')?.[1];
    blocks.push({ line: index + 1, marker, script: lines.slice(index + 1, end).join('\n') });
    index = end;
  }
  return blocks;
}

export const README = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
