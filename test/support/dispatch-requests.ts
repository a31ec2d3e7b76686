import { randomUUID } from 'node:crypto';
import type { DispatchInput } from '../../src/rails/dispatch.ts';
import type { DispatchRequest } from '../../src/rails/rail.ts';

/** A plausible claimed item, unique per call; override what the test is about. */
export function dispatchInput(overrides: Partial<DispatchInput> = {}): DispatchInput {
  const id = randomUUID();
  return {
    outboxId: id,
    instructionId: `ins-${id}`,
    participantId: 'participant-1',
    sequenceId: '42',
    idempotencyKey: `idem-${id}`,
    railType: 'test-rail',
    payload: { amount: '10.00', currency: 'EUR' },
    attempt: 1,
    ...overrides,
  };
}

/** The same, with a signal, as an adapter receives it. */
export function dispatchRequest(overrides: Partial<DispatchRequest> = {}): DispatchRequest {
  return { signal: new AbortController().signal, ...dispatchInput(overrides), ...overrides };
}
