/**
 * The error catalogue: every error the platform reports has a stable code and
 * one HTTP status. Gateways, runners and the CLI all speak these codes.
 */
export const ERROR_STATUS = {
  BAD_REQUEST: 400,
  INVALID_SPEC: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  FUNCTION_NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  CONFLICT: 409,
  BODY_TOO_LARGE: 413,
  HANDLER_ERROR: 500,
  FUNCTION_LOAD_FAILED: 500,
  INTERNAL: 500,
  RUNNER_UNAVAILABLE: 502,
  RUNNER_CRASHED: 502,
  FUNCTION_BUSY: 503,
  GATEWAY_OVERLOADED: 503,
  SCALE_UP_FAILED: 503,
  RUNNER_NOT_SPECIALIZED: 503,
  RUNNER_DRAINING: 503,
  SHUTTING_DOWN: 503,
  DEADLINE_EXCEEDED: 504,
  HANDLER_TIMEOUT: 504,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export interface ErrorBody {
  error: { code: ErrorCode; message: string; [extra: string]: unknown };
}

export class FaasError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: ErrorOptions & { details?: Record<string, unknown> },
  ) {
    super(message, options);
    this.name = "FaasError";
    this.status = ERROR_STATUS[code];
    this.details = options?.details;
  }
  readonly details: Record<string, unknown> | undefined;

  toBody(): ErrorBody {
    return { error: { ...this.details, code: this.code, message: this.message } };
  }
}

/** Reads `{"error":{"code","message"}}` from a parsed body, or undefined. */
export function parseErrorBody(body: unknown): { code: string; message: string } | undefined {
  if (typeof body !== "object" || body === null) return undefined;
  const err = (body as { error?: unknown }).error;
  if (typeof err !== "object" || err === null) return undefined;
  const { code, message } = err as { code?: unknown; message?: unknown };
  if (typeof code !== "string" || typeof message !== "string") return undefined;
  return { code, message };
}
