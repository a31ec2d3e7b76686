import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Logger } from 'pino';
import { ConfigError } from '../config-error.ts';
import type { RailOptionsReader } from './options.ts';
import type { RailAdapter, RailAdapterFactory } from './rail.ts';

/** A rail whose adapter comes from the user's own code: a file or an installed package. */
export interface ModuleRailOptions {
  /** A file path (absolute, or relative to the working directory) or a package name. */
  module: string;
  /** Handed to the module's factory as they are. */
  options: Record<string, unknown>;
}

/** A factory that has not answered by then is broken; start must fail, not hang. */
export const FACTORY_TIMEOUT_MS = 10_000;
const MAX_ERROR_TEXT = 300;

export function parseModuleOptions(reader: RailOptionsReader): ModuleRailOptions {
  reader.allowOnly(['type', 'module', 'options']);
  return {
    module: reader.string('module'),
    options: reader.has('options') ? reader.object('options') : {},
  };
}

export interface ModuleRailLoad {
  /** SYMPHONY_RAILS or SYMPHONY_RAILS_FILE, for the error messages. */
  source: string;
  railType: string;
  spec: ModuleRailOptions;
  logger: Logger;
  /** Where relative paths and package names are resolved from; the working directory by default. */
  cwd?: string;
}

/**
 * Imports the module, calls its default export with the entry's options and checks that
 * what comes back can dispatch. Every way this can go wrong is a ConfigError naming the rail
 * and the module: not found, failed while loading, no factory, the factory threw (or took
 * too long), or the result is not an adapter. The options are never echoed (credentials).
 */
export async function loadModuleRail(load: ModuleRailLoad): Promise<RailAdapter> {
  const { source, railType, spec } = load;
  const where = `${source} rail ${JSON.stringify(railType)}: module ${JSON.stringify(spec.module)}`;
  const fail = (problem: string): never => {
    throw new ConfigError(source, `${where} ${problem}`);
  };

  const namespace = await importRailModule(spec.module, load.cwd ?? process.cwd(), fail);
  const factory = factoryOf(namespace);
  if (!factory) {
    fail(
      'has no factory: expected its default export to be a function (options, context) => RailAdapter',
    );
  }

  let adapter: unknown;
  try {
    adapter = await withTimeout(
      Promise.resolve(
        (factory as RailAdapterFactory)(structuredClone(spec.options), {
          railType,
          logger: load.logger.child({ rail: railType }),
        }),
      ),
      FACTORY_TIMEOUT_MS,
    );
  } catch (error) {
    fail(`factory threw: ${errorText(error)} (check the rail's "options")`);
  }
  if (!isRailAdapter(adapter)) {
    fail(
      'factory returned no rail adapter: expected an object with a dispatch(request) function (and optionally close())',
    );
  }
  return adapter as RailAdapter;
}

async function importRailModule(
  specifier: string,
  cwd: string,
  fail: (problem: string) => never,
): Promise<Record<string, unknown>> {
  const isPath =
    specifier.startsWith('.') || path.isAbsolute(specifier) || specifier.startsWith('file:');
  if (isPath) {
    const file = specifier.startsWith('file:')
      ? new URL(specifier).pathname
      : path.resolve(cwd, specifier);
    if (!existsSync(file)) {
      fail(
        `was not found (looked for ${file}): expected the path of a JavaScript or TypeScript file, absolute or relative to the working directory`,
      );
    }
    return importOrFail(pathToFileURL(file).href, fail);
  }
  // A package: first as the user's project sees it (node_modules under the working
  // directory), then as this package sees it (installed next to symphony-relay).
  let resolved: string | undefined;
  try {
    resolved = pathToFileURL(createRequire(path.join(cwd, 'noop.js')).resolve(specifier)).href;
  } catch {
    resolved = undefined;
  }
  if (resolved) return importOrFail(resolved, fail);
  try {
    return (await import(specifier)) as Record<string, unknown>;
  } catch (error) {
    if (isNotFound(error, specifier)) {
      fail(
        `was not found: expected an installed package (npm install it in ${cwd}) or a file path starting with ./, ../ or /`,
      );
    }
    return fail(`failed to load: ${errorText(error)}`);
  }
}

async function importOrFail(
  url: string,
  fail: (problem: string) => never,
): Promise<Record<string, unknown>> {
  try {
    return (await import(url)) as Record<string, unknown>;
  } catch (error) {
    return fail(`failed to load: ${errorText(error)}`);
  }
}

function isNotFound(error: unknown, specifier: string): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return (
    (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') &&
    String((error as Error).message).includes(`'${specifier}'`)
  );
}

/** The default export; a CommonJS module compiled from ESM nests it once more. */
function factoryOf(namespace: Record<string, unknown>): RailAdapterFactory | undefined {
  const candidate = namespace.default;
  if (typeof candidate === 'function') return candidate as RailAdapterFactory;
  const nested = (candidate as Record<string, unknown> | undefined)?.default;
  return typeof nested === 'function' ? (nested as RailAdapterFactory) : undefined;
}

/** An object with a dispatch function (and, if any, a close function). */
export function isRailAdapter(value: unknown): value is RailAdapter {
  if (typeof value !== 'object' || value === null) return false;
  const candidate = value as Record<string, unknown>;
  return (
    typeof candidate.dispatch === 'function' &&
    (candidate.close === undefined || typeof candidate.close === 'function')
  );
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`it did not return an adapter within ${ms / 1000} s`)),
      ms,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function errorText(error: unknown): string {
  const text = (error instanceof Error ? error.message : String(error)).replace(/\s+/g, ' ').trim();
  return text.length > MAX_ERROR_TEXT ? `${text.slice(0, MAX_ERROR_TEXT)}…` : text;
}
