import { fileURLToPath } from 'node:url';

/** The repository root, with a trailing slash. */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The CLI exactly as operators run it: `node bin/symphony-relay.js <command>`. */
export const CLI_BIN = `${REPO_ROOT}bin/symphony-relay.js`;
