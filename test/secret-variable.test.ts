import { describe, expect, it } from 'vitest';
import { ConfigError } from '../src/config-error.ts';
import { readSecretVariable } from '../src/secret-variable.ts';
import { scratchDirectory } from './support/cli.ts';

const SECRET = 'hunter2-not-a-placeholder';

/** The ConfigError readSecretVariable throws for `env`; fails the test when it does not. */
function secretError(env: NodeJS.ProcessEnv): ConfigError {
  try {
    readSecretVariable(env, 'DATABASE_URL');
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    const configError = error as ConfigError;
    expect(configError.variable).toBe('DATABASE_URL_FILE');
    expect(configError.message).not.toMatch(/[\r\n]/);
    expect(configError.message).not.toContain(SECRET);
    return configError;
  }
  throw new Error(`readSecretVariable accepted ${JSON.stringify(env)}`);
}

describe('readSecretVariable (NAME or NAME_FILE)', async () => {
  const dir = await scratchDirectory('secret-variable');

  it('reads the inline variable, and treats empty as unset', () => {
    expect(readSecretVariable({ DATABASE_URL: SECRET }, 'DATABASE_URL')).toEqual({
      value: SECRET,
      source: 'DATABASE_URL',
    });
    expect(readSecretVariable({ DATABASE_URL: '', DATABASE_URL_FILE: '' }, 'DATABASE_URL')).toBe(
      undefined,
    );
    expect(readSecretVariable({}, 'DATABASE_URL')).toBe(undefined);
  });

  it('reads the file NAME_FILE names, dropping one trailing line break (echo writes one)', async () => {
    const unix = await dir.write('unix', `${SECRET}\n`);
    const windows = await dir.write('windows', `${SECRET}\r\n`);
    const bare = await dir.write('bare', SECRET);
    for (const file of [unix, windows, bare]) {
      expect(readSecretVariable({ DATABASE_URL_FILE: file }, 'DATABASE_URL')).toEqual({
        value: SECRET,
        source: 'DATABASE_URL_FILE',
      });
    }
  });

  it('refuses both at once', async () => {
    const file = await dir.write('both', SECRET);
    const error = secretError({ DATABASE_URL: SECRET, DATABASE_URL_FILE: file });
    expect(error.message).toBe(
      'DATABASE_URL and DATABASE_URL_FILE are both set: expected at most one of them (unset one)',
    );
  });

  it('names an unreadable file and the reason, without its contents', () => {
    const missing = `${dir.path}/missing`;
    const error = secretError({ DATABASE_URL_FILE: missing });
    expect(error.message).toBe(
      `DATABASE_URL_FILE="${missing}" cannot be read (ENOENT): expected a readable file holding DATABASE_URL (check the path and the mounted secret's permissions)`,
    );
    expect(secretError({ DATABASE_URL_FILE: dir.path }).message).toContain('(EISDIR)');
  });

  it('refuses an empty or blank file', async () => {
    for (const content of ['', '\n', '  \n']) {
      const file = await dir.write('empty', content);
      expect(secretError({ DATABASE_URL_FILE: file }).message).toBe(
        `DATABASE_URL_FILE="${file}" is empty: put DATABASE_URL in that file`,
      );
    }
  });

  it('refuses a file of several lines without echoing any of them', async () => {
    const file = await dir.write('two-lines', `${SECRET}\n${SECRET}\n`);
    expect(secretError({ DATABASE_URL_FILE: file }).message).toContain('holds more than one line');
  });
});
