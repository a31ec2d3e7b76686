#!/usr/bin/env node
// In a checkout the CLI runs the TypeScript sources through tsx (a development dependency),
// so there is no build step to forget. The image ships no sources, only the JavaScript that
// `npm run build` compiled into dist/, and runs that without tsx.
import { existsSync } from 'node:fs';
import { URL } from 'node:url';

if (existsSync(new URL('../src/cli/main.ts', import.meta.url))) {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli/main.ts');
} else {
  await import('../dist/cli/main.js');
}
