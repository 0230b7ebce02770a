/**
 * The error codes this runner reports, copied from `@faas/api`'s catalogue
 * (packages/api/src/errors.ts) so the runner depends on no workspace package.
 * A test in test/local checks the statuses still match the catalogue.
 */
export const RUNNER_ERROR_STATUS = {
  BAD_REQUEST: 400,
  INVALID_SPEC: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  CONFLICT: 409,
  BODY_TOO_LARGE: 413,
  HANDLER_ERROR: 500,
  FUNCTION_LOAD_FAILED: 500,
  INTERNAL: 500,
  RUNNER_UNAVAILABLE: 502,
  RUNNER_CRASHED: 502,
  RUNNER_NOT_SPECIALIZED: 503,
  RUNNER_DRAINING: 503,
  HANDLER_TIMEOUT: 504,
} as const;

export type RunnerErrorCode = keyof typeof RUNNER_ERROR_STATUS;

export class RunnerError extends Error {
  readonly status: number;
  constructor(
    readonly code: RunnerErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
    options?: ErrorOptions & { status?: number },
  ) {
    super(message, options);
    this.name = "RunnerError";
    this.status = options?.status ?? RUNNER_ERROR_STATUS[code];
  }

  toBody(): string {
    return JSON.stringify({ error: { code: this.code, message: this.message, ...this.details } });
  }
}

/** `"TypeError: x is not a function"`, whatever was thrown. */
export function describeThrown(value: unknown): string {
  if (value instanceof Error || (typeof value === "object" && value !== null && "message" in value)) {
    const { name, message } = value as { name?: unknown; message?: unknown };
    return `${typeof name === "string" && name ? name : "Error"}: ${String(message)}`;
  }
  return `non-Error value thrown: ${typeof value === "string" ? JSON.stringify(value) : String(value)}`;
}
