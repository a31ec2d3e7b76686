import { expect } from 'vitest';

/** Awaits a query expected to fail and asserts its exact SQLSTATE; returns the error. */
export async function expectSqlState(
  promise: Promise<unknown>,
  sqlState: string,
): Promise<Error & { code: string }> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected SQLSTATE ${sqlState}, but the statement succeeded`).toBeInstanceOf(
    Error,
  );
  const error = caught as Error & { code: string };
  expect({ code: error.code, message: error.message }).toMatchObject({ code: sqlState });
  return error;
}
