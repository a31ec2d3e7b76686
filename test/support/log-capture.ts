/** A pino destination that keeps every JSON line, for asserting what was (not) logged. */
export interface LogCapture {
  write(line: string): void;
  /** Everything written, as one string (to search for leaked secrets). */
  text(): string;
  /** Every line, parsed. */
  records(): Record<string, unknown>[];
}

export function captureLogs(): LogCapture {
  const lines: string[] = [];
  return {
    write: (line) => {
      lines.push(line);
    },
    text: () => lines.join(''),
    records: () =>
      lines
        .join('')
        .split('\n')
        .filter((line) => line.length > 0)
        .map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}
