import type { Logger } from 'pino';
import { ConfigError } from '../config-error.ts';
import { HttpRail, parseHttpOptions, type HttpRailOptions } from './http.ts';
import {
  isRailAdapter,
  loadModuleRail,
  parseModuleOptions,
  type ModuleRailOptions,
} from './module-rail.ts';
import { isPlainObject, RailOptionsReader } from './options.ts';
import type { RailAdapter } from './rail.ts';
import { parseSandboxOptions, SandboxRail, type SandboxRailOptions } from './sandbox.ts';

export type RailSpec =
  | ({ type: 'sandbox' } & SandboxRailOptions)
  | ({ type: 'http' } & HttpRailOptions)
  | ({ type: 'module' } & ModuleRailOptions);

/** rail_type (as stored on outbox items) → adapter settings. */
export type RailsConfig = Record<string, RailSpec>;

export const DEFAULT_RAILS_JSON = '{"sandbox":{"type":"sandbox"}}';

const RAIL_KEY = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;
const RAIL_TYPES = ['sandbox', 'http', 'module'] as const;

/**
 * Validates the rails configuration (the parsed JSON of SYMPHONY_RAILS or the file named by
 * SYMPHONY_RAILS_FILE). `source` names the variable in error messages.
 */
export function parseRailsConfig(raw: unknown, source = 'SYMPHONY_RAILS'): RailsConfig {
  if (!isPlainObject(raw)) {
    throw new ConfigError(
      source,
      `${source} is invalid: expected a JSON object of rail_type → { "type": "sandbox" | "http" | "module", ... }`,
    );
  }
  const rails: RailsConfig = {};
  for (const [key, entry] of Object.entries(raw)) {
    if (!RAIL_KEY.test(key)) {
      throw new ConfigError(
        source,
        `${source} rail ${JSON.stringify(key.slice(0, 80))} is invalid: a rail_type is 1-64 letters, digits, "_", ".", ":" or "-", starting with a letter or digit`,
      );
    }
    if (!isPlainObject(entry)) {
      throw new ConfigError(
        source,
        `${source} rail ${JSON.stringify(key)} is invalid: expected a JSON object with "type"`,
      );
    }
    const reader = new RailOptionsReader(source, key, entry);
    switch (entry.type) {
      case 'sandbox':
        rails[key] = { type: 'sandbox', ...parseSandboxOptions(reader) };
        break;
      case 'http':
        rails[key] = { type: 'http', ...parseHttpOptions(reader) };
        break;
      case 'module':
        rails[key] = { type: 'module', ...parseModuleOptions(reader) };
        break;
      default:
        reader.fail('type', `one of ${RAIL_TYPES.map((t) => `"${t}"`).join(', ')}`);
    }
  }
  return rails;
}

/** Adapters keyed by the rail_type of the outbox items they deliver. */
export class RailRegistry {
  private readonly adapters: ReadonlyMap<string, RailAdapter>;

  constructor(adapters: Iterable<[string, RailAdapter]>) {
    this.adapters = new Map(adapters);
  }

  get(railType: string): RailAdapter | undefined {
    return this.adapters.get(railType);
  }

  railTypes(): string[] {
    return [...this.adapters.keys()].sort();
  }

  /** Closes every adapter that holds resources; one failing close does not skip the others. */
  async close(): Promise<void> {
    const results = await Promise.allSettled(
      [...this.adapters.values()].map(async (adapter) => adapter.close?.()),
    );
    const failure = results.find((result) => result.status === 'rejected');
    if (failure) throw (failure as PromiseRejectedResult).reason;
  }
}

export interface LoadRailsOptions {
  /** SYMPHONY_RAILS or SYMPHONY_RAILS_FILE, for error messages. */
  source?: string;
  logger: Logger;
  /** Adapters built in the caller's own code (the programmatic API), keyed by rail_type. */
  adapters?: Record<string, RailAdapter>;
  /** Where module rails are resolved from; the working directory by default. */
  cwd?: string;
}

/**
 * Builds the registry from validated rails (parseRailsConfig), importing module rails (the user's own adapters). A failure closes
 * whatever was already built before it is reported, so a refused start leaks nothing.
 */
export async function loadRailRegistry(
  rails: RailsConfig,
  options: LoadRailsOptions,
): Promise<RailRegistry> {
  const source = options.source ?? 'SYMPHONY_RAILS';
  const built: [string, RailAdapter][] = [];
  try {
    for (const [railType, adapter] of Object.entries(options.adapters ?? {})) {
      if (!RAIL_KEY.test(railType) || !isRailAdapter(adapter)) {
        throw new ConfigError(
          'rails',
          `rail ${JSON.stringify(railType.slice(0, 80))} given in code is invalid: expected a rail_type of 1-64 letters, digits, "_", ".", ":" or "-" and an object with a dispatch(request) function`,
        );
      }
      if (rails[railType]) {
        throw new ConfigError(
          source,
          `${source} rail ${JSON.stringify(railType)} is also given as an adapter in code: expected each rail_type once (remove one)`,
        );
      }
      built.push([railType, adapter]);
    }
    for (const [railType, spec] of Object.entries(rails)) {
      built.push([
        railType,
        spec.type === 'module'
          ? await loadModuleRail({
              source,
              railType,
              spec: { module: spec.module, options: spec.options },
              logger: options.logger,
              cwd: options.cwd,
            })
          : createAdapter(spec),
      ]);
    }
  } catch (error) {
    await new RailRegistry(built).close().catch(() => undefined);
    throw error;
  }
  return new RailRegistry(built);
}

/** Builds a registry of built-in rails only (module rails need loadRailRegistry). */
export function buildRailRegistry(railsConfig: unknown, source = 'SYMPHONY_RAILS'): RailRegistry {
  const rails = parseRailsConfig(railsConfig, source);
  return new RailRegistry(
    Object.entries(rails).map(([railType, spec]): [string, RailAdapter] => [
      railType,
      createAdapter(spec),
    ]),
  );
}

function createAdapter(spec: RailSpec): RailAdapter {
  switch (spec.type) {
    case 'module':
      throw new Error('module rails are loaded asynchronously: use loadRailRegistry');
    case 'sandbox': {
      const { type: _type, ...options } = spec;
      return new SandboxRail(options);
    }
    case 'http': {
      const { type: _type, ...options } = spec;
      return new HttpRail(options);
    }
  }
}
