/**
 * What the CLI's exit status means, and the one error type commands throw to
 * choose it. `toCliError` turns anything else into one at the edge.
 */
import { FaasError } from "@faas/api";

export const EXIT = {
  OK: 0,
  /** The function or the platform answered with an error (HTTP ≥ 400, API error). */
  FAILED: 1,
  /** Bad command line, unreadable manifest or invalid Function spec. */
  USAGE: 2,
  /** No gateway to talk to (not running, not reachable), or `up` cannot bind its port. */
  UNAVAILABLE: 3,
  /** No such function. */
  NOT_FOUND: 4,
  /** Stopped by Ctrl-C. */
  INTERRUPTED: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export const EXIT_CODES_HELP = `Exit codes:
  0    success
  1    the function or the platform answered with an error (HTTP >= 400, API error)
  2    usage error or invalid Function spec
  3    gateway not running or not reachable (start it: npm start, or faas up)
  4    no such function
  130  interrupted (Ctrl-C)`;

export class CliError extends Error {
  constructor(
    readonly exitCode: ExitCode,
    message: string,
    readonly hint?: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "CliError";
  }
}

/** Platform error codes that mean "you asked for something that does not exist". */
const NOT_FOUND_CODES = new Set(["FUNCTION_NOT_FOUND"]);
/** Platform error codes that mean "what you gave is wrong". */
const USAGE_CODES = new Set(["INVALID_SPEC", "BAD_REQUEST"]);

/** Exit code for a platform error code (from a FaasError or an HTTP error body). */
export function exitCodeFor(code: string): ExitCode {
  if (NOT_FOUND_CODES.has(code)) return EXIT.NOT_FOUND;
  if (USAGE_CODES.has(code)) return EXIT.USAGE;
  return EXIT.FAILED;
}

export function toCliError(err: unknown): CliError {
  if (err instanceof CliError) return err;
  if (err instanceof FaasError) {
    // Local validation and manifest loading: a missing file is a usage error too.
    const exitCode = err.code === "NOT_FOUND" ? EXIT.USAGE : exitCodeFor(err.code);
    return new CliError(exitCode, err.message, undefined, { cause: err });
  }
  return new CliError(EXIT.FAILED, err instanceof Error ? err.message : String(err), undefined, { cause: err });
}
