/**
 * A setting the operator must fix before the relayer can start. The message is one line
 * (it ends up in a container log or a terminal), names the variable, shows the bad value
 * unless it may be a secret, and says what is allowed.
 */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';

  constructor(
    /** The environment variable (or `SYMPHONY_RAILS` key path) that is wrong. */
    readonly variable: string,
    message: string,
  ) {
    super(oneLine(message));
  }
}

const MAX_SHOWN_VALUE = 80;

/** A value quoted for an error message: control characters escaped, long values cut. */
export function showValue(value: string): string {
  const shown = value.length > MAX_SHOWN_VALUE ? `${value.slice(0, MAX_SHOWN_VALUE)}…` : value;
  return JSON.stringify(shown);
}

function oneLine(message: string): string {
  return message.replace(/\s*[\r\n]+\s*/g, ' ');
}
