import { describe, expect, it } from 'vitest';
import { isTransientDatabaseError, sqlStateOf } from '../../src/db/errors.ts';

const pgError = (code: string) => Object.assign(new Error(`error ${code}`), { code });

describe('database error classification', () => {
  it.each(['08006', '40001', '40P01', '53300', '55000', '55P03', '57P01', '57P03'])(
    '%s is worth another try',
    (code) => {
      expect(isTransientDatabaseError(pgError(code))).toBe(true);
    },
  );

  it('a dropped connection without SQLSTATE is worth another try', () => {
    expect(
      isTransientDatabaseError(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })),
    ).toBe(true);
  });

  it.each(['22P05', '23505', '42501', 'P7002', 'P7003'])(
    '%s fails the same way every time',
    (code) => {
      expect(isTransientDatabaseError(pgError(code))).toBe(false);
    },
  );

  it('finds the SQLSTATE of a wrapped error', () => {
    expect(sqlStateOf(new Error('outer', { cause: pgError('23514') }))).toBe('23514');
  });
});
