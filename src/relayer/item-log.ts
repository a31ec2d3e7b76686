import type { ClaimedItem } from '../db/outbox.ts';
import type { TimedDispatchOutcome } from '../rails/dispatch.ts';

/**
 * What every log line about an item carries, so an operator can find a payment by any of
 * its identifiers (the worker id comes from the logger's bindings). Never the payload or the
 * idempotency key.
 */
export function itemLogFields(item: ClaimedItem) {
  return {
    outboxId: item.outboxId,
    instructionId: item.instructionId,
    participantId: item.participantId,
    sequenceId: item.sequenceId,
    rail: item.railType,
    attempt: item.attemptCount + 1,
  };
}

/** How the rail answered: its status (an HTTP status for http rails) and the time it took. */
export function dispatchLogFields(outcome: TimedDispatchOutcome) {
  const railCode = outcome.railCode;
  return {
    ...(railCode !== undefined && /^\d{3}$/.test(railCode)
      ? { httpStatus: Number(railCode) }
      : railCode !== undefined
        ? { railCode }
        : {}),
    latencyMs: outcome.latencyMs,
  };
}
