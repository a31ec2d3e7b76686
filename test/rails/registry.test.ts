import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config-error.ts';
import type { RailAdapter } from '../../src/rails/rail.ts';
import { buildRailRegistry, RailRegistry } from '../../src/rails/registry.ts';

function registryError(rails: unknown, source?: string): ConfigError {
  try {
    buildRailRegistry(rails, source);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error(`buildRailRegistry accepted ${JSON.stringify(rails)}`);
}

const SECRET = 'Bearer rail-credential-123';

describe('buildRailRegistry', () => {
  it('registers one adapter per rail_type', () => {
    const registry = buildRailRegistry({
      sandbox: { type: 'sandbox' },
      'sepa.instant': {
        type: 'http',
        url: 'https://rail.example/sepa',
        headers: { Authorization: SECRET },
      },
    });
    expect(registry.railTypes()).toEqual(['sandbox', 'sepa.instant']);
    expect(registry.get('sandbox')?.kind).toBe('sandbox');
    expect(registry.get('sepa.instant')?.kind).toBe('http');
    expect(registry.get('swift')).toBeUndefined();
  });

  it.each([
    ['not an object', [], 'SYMPHONY_RAILS is invalid: expected a JSON object'],
    [
      'a bad rail key',
      { 'has space': { type: 'sandbox' } },
      'SYMPHONY_RAILS rail "has space" is invalid',
    ],
    ['an entry that is not an object', { card: 'http' }, 'SYMPHONY_RAILS rail "card" is invalid'],
    [
      'an unknown type',
      { card: { type: 'iso20022' } },
      'SYMPHONY_RAILS rail "card": "type" is invalid',
    ],
    ['a missing url', { card: { type: 'http' } }, 'SYMPHONY_RAILS rail "card": "url" is invalid'],
    [
      'an ftp url',
      { card: { type: 'http', url: 'ftp://rail.example' } },
      '"url" is invalid: expected an http:// or https:// URL',
    ],
    [
      'a misspelt option',
      { card: { type: 'http', url: 'https://r.example', timeoutMS: 10 } },
      '"timeoutMS" is invalid: expected no such option',
    ],
    [
      'a zero timeout',
      { card: { type: 'http', url: 'https://r.example', timeoutMs: 0 } },
      '"timeoutMs" is invalid',
    ],
    [
      'a connection bound of none',
      { card: { type: 'http', url: 'https://r.example', maxConnections: 0 } },
      '"maxConnections" is invalid',
    ],
    [
      'a bad header name',
      { card: { type: 'http', url: 'https://r.example', headers: { 'a b': 'x' } } },
      '"headers" is invalid',
    ],
    [
      'a header value an HTTP header cannot carry (outside Latin-1), instead of failing every payment',
      { card: { type: 'http', url: 'https://r.example', headers: { 'x-desk': 'bänk-☃' } } },
      '"headers" is invalid: expected an object of header name to string value (tab, visible ASCII or Latin-1; no line breaks)',
    ],
    [
      'a latency range upside down',
      { sim: { type: 'sandbox', latencyMs: [50, 5] } },
      'rail "sim": "latencyMs" is invalid',
    ],
    [
      'weights summing to 0',
      { sim: { type: 'sandbox', outcomes: { DISPATCHED: 0 } } },
      'rail "sim": "outcomes" is invalid',
    ],
    [
      'an unknown outcome',
      { sim: { type: 'sandbox', outcomes: { OK: 1 } } },
      'rail "sim": "outcomes" is invalid',
    ],
    ['a negative seed', { sim: { type: 'sandbox', seed: -1 } }, 'rail "sim": "seed" is invalid'],
  ])('refuses %s, naming SYMPHONY_RAILS and the rail', (_label, rails, message) => {
    const error = registryError(rails);
    expect(error.variable).toBe('SYMPHONY_RAILS');
    expect(error.message).toContain(message);
  });

  it('names the source it was given', () => {
    expect(registryError({ card: { type: 'http' } }, 'SYMPHONY_RAILS_FILE').message).toMatch(
      /^SYMPHONY_RAILS_FILE rail "card"/,
    );
  });

  it('never echoes credentials: not from a URL, not from a header value', () => {
    const inUrl = registryError({
      card: { type: 'http', url: 'https://user:hunter2@rail.example' },
    });
    expect(inUrl.message).toContain('without user:password');
    expect(inUrl.message).not.toContain('hunter2');
    const inHeader = registryError({
      card: {
        type: 'http',
        url: 'https://rail.example',
        headers: { Authorization: `${SECRET}\r\nX: y` },
      },
    });
    expect(inHeader.message).not.toContain('rail-credential-123');
  });
});

describe('RailRegistry.close', () => {
  it('closes every adapter even when one fails, then reports the failure', async () => {
    const closed: string[] = [];
    const closing = (name: string, fail = false): RailAdapter => ({
      kind: 'test',
      dispatch: async () => ({ state: 'DISPATCHED', railReference: null }),
      close: async () => {
        closed.push(name);
        if (fail) throw new Error(`${name} failed to close`);
      },
    });
    const registry = new RailRegistry([
      ['a', closing('a', true)],
      ['b', closing('b')],
      ['c', { kind: 'test', dispatch: async () => ({ state: 'DISPATCHED', railReference: null }) }],
    ]);
    await expect(registry.close()).rejects.toThrow('a failed to close');
    expect(closed.sort()).toEqual(['a', 'b']);
  });
});
