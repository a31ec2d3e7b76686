import { ConfigError } from '../config-error.ts';

/**
 * Reads the options of one rail entry with errors that name where the entry came from
 * (`SYMPHONY_RAILS` or `SYMPHONY_RAILS_FILE`), the rail key and the field. Values are never
 * echoed: rail entries hold credentials (static auth headers).
 */
export class RailOptionsReader {
  constructor(
    readonly source: string,
    readonly railKey: string,
    readonly entry: Record<string, unknown>,
  ) {}

  fail(field: string, expected: string): never {
    throw new ConfigError(
      this.source,
      `${this.source} rail ${JSON.stringify(this.railKey)}: "${field}" is invalid: expected ${expected}`,
    );
  }

  /** Rejects fields the adapter does not know, so a typo does not silently use a default. */
  allowOnly(fields: readonly string[]): void {
    for (const field of Object.keys(this.entry)) {
      if (!fields.includes(field)) {
        this.fail(field, `no such option (known options: ${fields.join(', ')})`);
      }
    }
  }

  has(field: string): boolean {
    return this.entry[field] !== undefined;
  }

  string(field: string, fallback?: string): string {
    const value = this.entry[field] ?? fallback;
    if (typeof value !== 'string' || value.length === 0) this.fail(field, 'a non-empty string');
    return value;
  }

  integer(field: string, min: number, max: number): number {
    const value = this.entry[field];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      this.fail(field, `an integer from ${min} to ${max}`);
    }
    return value;
  }

  object(field: string): Record<string, unknown> {
    const value = this.entry[field];
    if (!isPlainObject(value)) this.fail(field, 'a JSON object');
    return value;
  }

  value(field: string): unknown {
    return this.entry[field];
  }
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
