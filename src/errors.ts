/**
 * Error classes that callers branch on. Everything else is a plain Error,
 * chained with `{ cause }`.
 */

/** Bad input from the operator (flags, ids, state): exit code 2, nothing changed. */
export class UserError extends Error {
  override name = 'UserError';
}

/** A configuration variable is missing or invalid: exit code 2, nothing changed. */
export class ConfigError extends UserError {
  override name = 'ConfigError';
  readonly variable: string;
  constructor(variable: string, problem: string) {
    super(`invalid configuration: ${variable} ${problem}`);
    this.variable = variable;
  }
}

/** A required service (Postgres, Redis, Kafka) cannot be reached: exit code 3. */
export class ServiceUnavailableError extends Error {
  override name = 'ServiceUnavailableError';
}

/**
 * The caller no longer owns the task or lease it tried to write through
 * (its fencing token is stale). Nothing was written.
 */
export class FencedError extends Error {
  override name = 'FencedError';
}

/** A migration definition that cannot be used as written: exit code 2, nothing changed. */
export class DefinitionError extends UserError {
  override name = 'DefinitionError';
}
