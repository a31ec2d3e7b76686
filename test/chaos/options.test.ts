import { describe, expect, it } from 'vitest';
import { FULL_CONFIG, OptionsError, parseChaosArgs } from '../../chaos/options.ts';

describe('npm run chaos options', () => {
  it('defaults to the full configuration: 10,000 items, 4 workers, 5 minutes', () => {
    expect(parseChaosArgs([])).toEqual(FULL_CONFIG);
    expect(FULL_CONFIG).toMatchObject({ items: 10_000, workers: 4, durationSeconds: 300 });
  });

  it('reads items, workers, duration and the rest', () => {
    expect(
      parseChaosArgs(['--items', '50', '--workers', '2', '--duration', '10', '--rate', '0']),
    ).toMatchObject({ items: 50, workers: 2, durationSeconds: 10, rate: 0 });
  });

  it.each([
    [['--workers', '0'], '--workers "0" is invalid: expected a whole number from 1 to 32'],
    [['--duration', '1e3'], '--duration "1e3" is invalid: expected a whole number from 5 to 3600'],
    [['--items=-1'], '--items "-1" is invalid'],
    [['--bogus'], "Unknown option '--bogus'"],
    [['--pg-restart-command', 'true'], '--pg-restart-command needs --admin-url'],
    [['--admin-url', 'mysql://u:secret@h/d'], '--admin-url is invalid (value not shown'],
  ])('refuses %j with one line naming the option', (argv, message) => {
    let thrown: unknown;
    try {
      parseChaosArgs(argv);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(OptionsError);
    expect((thrown as Error).message).toContain(message);
    expect((thrown as Error).message).not.toContain('secret');
    expect((thrown as Error).message).not.toContain('\n');
  });
});
