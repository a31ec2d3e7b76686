import { readFileSync } from 'node:fs';
import { ConfigError, showValue } from './config-error.ts';

/** A secret's value and the variable it came from, for error messages. */
export interface SecretValue {
  value: string;
  /** `NAME`, or `NAME_FILE` when the value was read from a file. */
  source: string;
}

/**
 * A secret given either inline (`NAME`) or as a file (`NAME_FILE`, the convention of Docker
 * and Kubernetes secrets, which are mounted as files and so stay out of `docker inspect` and
 * the process environment). Undefined when neither is set; an empty variable counts as unset.
 * One trailing line break is dropped (`echo secret > file` writes one). Throws ConfigError
 * when both are set or the file cannot be read, is empty or holds more than one line; the
 * file's contents are never part of a message.
 */
export function readSecretVariable(env: NodeJS.ProcessEnv, name: string): SecretValue | undefined {
  const fileVariable = `${name}_FILE`;
  const inline = nonEmpty(env[name]);
  const path = nonEmpty(env[fileVariable]);
  if (inline !== undefined && path !== undefined) {
    throw new ConfigError(
      fileVariable,
      `${name} and ${fileVariable} are both set: expected at most one of them (unset one)`,
    );
  }
  if (path === undefined) return inline === undefined ? undefined : { value: inline, source: name };
  const shownPath = `${fileVariable}=${showValue(path)}`;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'read error';
    throw new ConfigError(
      fileVariable,
      `${shownPath} cannot be read (${code}): expected a readable file holding ${name} (check the path and the mounted secret's permissions)`,
    );
  }
  const value = text.replace(/\r?\n$/, '');
  if (value.trim() === '') {
    throw new ConfigError(fileVariable, `${shownPath} is empty: put ${name} in that file`);
  }
  if (/[\r\n]/.test(value)) {
    throw new ConfigError(
      fileVariable,
      `${shownPath} holds more than one line (not shown: it is a secret): expected ${name} alone on one line`,
    );
  }
  return { value, source: fileVariable };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
