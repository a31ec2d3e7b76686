/**
 * Turns operator input (flags or a JSON-lines file) into enqueue requests, refusing
 * anything malformed with a message that says where and what. Payload contents never
 * appear in a message: they are payment instructions.
 */
import { readFile, stat } from 'node:fs/promises';
import type { EnqueueRequest } from '../db/outbox.ts';
import { CliError } from './errors.ts';

const TEXT_FIELDS = ['instructionId', 'participantId', 'idempotencyKey', 'railType'] as const;
const FIELDS: readonly string[] = [...TEXT_FIELDS, 'payload', 'traceparent'];

export interface EnqueueFlags {
  instructionId?: string;
  participantId?: string;
  idempotencyKey?: string;
  railType?: string;
  payload?: string;
  /** Optional: the producer's W3C trace context. */
  traceparent?: string;
}

const FLAG_NAMES: Record<Exclude<keyof EnqueueFlags, 'traceparent'>, string> = {
  instructionId: '--instruction-id',
  participantId: '--participant-id',
  idempotencyKey: '--idempotency-key',
  railType: '--rail-type',
  payload: '--payload',
};

/** One item from the command-line flags; every flag is required. */
export function requestFromFlags(flags: EnqueueFlags): EnqueueRequest {
  const missing = (Object.keys(FLAG_NAMES) as (keyof typeof FLAG_NAMES)[])
    .filter((name) => flags[name] === undefined)
    .map((name) => FLAG_NAMES[name]);
  if (missing.length > 0) {
    throw new CliError(
      `enqueue: missing ${missing.join(', ')}: pass all five item flags, or --file <items.jsonl>`,
      2,
    );
  }
  const problem = (message: string) => new CliError(`enqueue: ${message}`, 2);
  const payload = parsePayload(flags.payload as string, problem, '--payload');
  return validateItem(
    {
      instructionId: flags.instructionId,
      participantId: flags.participantId,
      idempotencyKey: flags.idempotencyKey,
      railType: flags.railType,
      payload,
      ...(flags.traceparent === undefined ? {} : { traceparent: flags.traceparent }),
    },
    problem,
    (field) =>
      field === 'traceparent' ? '--traceparent' : FLAG_NAMES[field as keyof typeof FLAG_NAMES],
  );
}

export interface FileItem {
  line: number;
  request: EnqueueRequest;
}

/**
 * A file is one transaction, which holds its participants' sequence numbers until it
 * commits, so it is bounded like the database's batch call (10,000 items); the byte bound
 * keeps the whole file, read at once to be checked whole, well inside one process's memory.
 */
export const MAX_FILE_ITEMS = 10_000;
export const MAX_FILE_BYTES = 256 * 1024 * 1024;

/**
 * Every item of a JSON-lines file, each `{instructionId, participantId, idempotencyKey,
 * railType, payload}`. The whole file is checked before anything is enqueued, so a typo on
 * line 900 cannot leave the first 899 items half-submitted. Blank lines are skipped.
 */
export async function requestsFromFile(file: string): Promise<FileItem[]> {
  const split = `split it, e.g. split -l ${MAX_FILE_ITEMS} ${file} part-, and enqueue each part`;
  let text: string;
  try {
    const { size } = await stat(file);
    if (size > MAX_FILE_BYTES) {
      throw new CliError(
        `enqueue: ${file} is ${size} bytes; a file may hold at most ${MAX_FILE_BYTES} bytes: ${split}; nothing was enqueued`,
        2,
      );
    }
    text = await readFile(file, 'utf8');
  } catch (error) {
    if (error instanceof CliError) throw error;
    throw new CliError(`enqueue: cannot read ${file}: ${(error as Error).message}`, 2);
  }
  const lines = text.split('\n');
  const itemCount = lines.reduce((count, raw) => (raw.trim() === '' ? count : count + 1), 0);
  if (itemCount > MAX_FILE_ITEMS) {
    throw new CliError(
      `enqueue: ${file} holds ${itemCount} items; a file may hold at most ${MAX_FILE_ITEMS} (one transaction): ${split}; nothing was enqueued`,
      2,
    );
  }
  const items: FileItem[] = [];
  for (const [index, raw] of lines.entries()) {
    const line = index + 1;
    if (raw.trim() === '') continue;
    const problem = (message: string) =>
      new CliError(`enqueue: ${file} line ${line}: ${message}; nothing was enqueued`, 2);
    const value = parseJson(raw, problem, 'the line');
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw problem(`expected a JSON object, got ${jsonKind(value)}`);
    }
    const request = validateItem(value as Record<string, unknown>, problem, (field) => field);
    items.push({ line, request });
  }
  if (items.length === 0) {
    throw new CliError(`enqueue: ${file} holds no items (expected one JSON object per line)`, 2);
  }
  return items;
}

function validateItem(
  item: Record<string, unknown>,
  problem: (message: string) => CliError,
  label: (field: string) => string,
): EnqueueRequest {
  const unknown = Object.keys(item).filter((key) => !FIELDS.includes(key));
  if (unknown.length > 0) {
    throw problem(
      `unknown field ${unknown.map((key) => JSON.stringify(key)).join(', ')} (expected ${FIELDS.join(', ')})`,
    );
  }
  for (const field of TEXT_FIELDS) {
    const value = item[field];
    if (value === undefined) throw problem(`${label(field)} is missing`);
    if (typeof value !== 'string' || value.trim() === '') {
      throw problem(`${label(field)} must be a non-empty string, got ${jsonKind(value)}`);
    }
  }
  const payload = item.payload;
  if (payload === undefined) throw problem(`${label('payload')} is missing`);
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    throw problem(`${label('payload')} must be a JSON object, got ${jsonKind(payload)}`);
  }
  const traceparent = item.traceparent;
  if (traceparent !== undefined && typeof traceparent !== 'string') {
    throw problem(`${label('traceparent')} must be a string, got ${jsonKind(traceparent)}`);
  }
  return {
    instructionId: item.instructionId as string,
    participantId: item.participantId as string,
    idempotencyKey: item.idempotencyKey as string,
    railType: item.railType as string,
    payload: payload as Record<string, unknown>,
    ...(traceparent === undefined ? {} : { traceparent }),
  };
}

function parsePayload(
  text: string,
  problem: (message: string) => CliError,
  label: string,
): Record<string, unknown> {
  const value = parseJson(text, problem, label);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw problem(`${label} must be a JSON object, got ${jsonKind(value)}`);
  }
  return value as Record<string, unknown>;
}

/** JSON.parse whose error names only the position: V8's own message quotes the input. */
function parseJson(text: string, problem: (message: string) => CliError, label: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    const position = /position (\d+)/.exec((error as Error).message)?.[1];
    throw problem(`${label} is not valid JSON${position ? ` (at character ${position})` : ''}`);
  }
}

function jsonKind(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return value.trim() === '' ? 'an empty string' : 'a string';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}
