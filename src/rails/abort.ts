import type { DispatchOutcome } from './rail.ts';

/**
 * The outcome of a dispatch cut short by its signal. A timeout is reported as `TIMEOUT`;
 * any other abort (the relayer shutting down) as `ABORTED`. Both are retryable: the rail may
 * or may not have acted, and the idempotency key makes a redelivery safe.
 */
export function abortedOutcome(signal: AbortSignal): DispatchOutcome {
  return abortOutcome(signal.reason);
}

/** The same, from the abort's reason. */
export function abortOutcome(reason: unknown): DispatchOutcome {
  return isTimeout(reason)
    ? { state: 'RETRYABLE', errorCode: 'TIMEOUT', errorMessage: 'the dispatch timed out' }
    : { state: 'RETRYABLE', errorCode: 'ABORTED', errorMessage: 'the dispatch was aborted' };
}

export function timeoutReason(message: string): DOMException {
  return new DOMException(message, 'TimeoutError');
}

function isTimeout(reason: unknown): boolean {
  return reason instanceof Error || reason instanceof DOMException
    ? reason.name === 'TimeoutError'
    : false;
}
