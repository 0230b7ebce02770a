/**
 * Temporary errors are retried with backoff; permanent ones set Ready=False
 * with a reason and wait for the Function to change (kopf's
 * TemporaryError/PermanentError).
 */
import { FaasError } from "@faas/api";
import { KubeError } from "@faas/kube";

export class PermanentError extends Error {
  constructor(
    /** CamelCase condition reason: InvalidSpec, ApplyRejected, NameConflict, … */
    readonly reason: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "PermanentError";
  }
}

export class TemporaryError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "TemporaryError";
  }
}

/** A permanent error for what no retry can fix, else undefined (retry it). */
export function asPermanent(err: unknown): PermanentError | undefined {
  if (err instanceof PermanentError) return err;
  if (err instanceof FaasError && err.code === "INVALID_SPEC") {
    return new PermanentError("InvalidSpec", err.message, { cause: err });
  }
  // The API server refused what we built: the same input will be refused again.
  if (err instanceof KubeError && (err.status === 400 || err.status === 422)) {
    return new PermanentError("ApplyRejected", err.message, { cause: err });
  }
  return undefined;
}
