/**
 * The gateway's edge: every error becomes a response here, in one shape.
 */
import { randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { FaasError } from "@faas/api";
import type { Logger } from "pino";

/** The header that carries the id under which the gateway logged a request's internal error. */
export const REQUEST_ID_HEADER = "x-faas-request-id";
const BOOT_ID = randomBytes(4).toString("hex");
let requestSeq = 0;

/** Unique per gateway process; made only when needed, so the hot path pays nothing. */
export function newRequestId(): string {
  requestSeq++;
  return `${BOOT_ID}-${requestSeq.toString(36)}`;
}

/**
 * An error nobody expected (a bug): 500 INTERNAL for this one request, logged
 * with a request id that the client gets too. Never throws, so it can be the
 * last line of defence of any handler.
 */
export function sendInternalError(log: Logger, req: IncomingMessage, res: ServerResponse, err: unknown): void {
  const requestId = newRequestId();
  try {
    log.error({ err, reqId: requestId, method: req.method, url: req.url }, "internal error");
    req.resume();
    const e = new FaasError("INTERNAL", `internal gateway error; logged as request ${requestId}`, {
      cause: err,
      details: { requestId },
    });
    if (res.headersSent || res.destroyed) res.destroy();
    else sendError(res, e, { [REQUEST_ID_HEADER]: requestId, connection: "close" });
  } catch {
    res.destroy();
  }
}

/** Decodes one percent-encoded path segment; malformed encoding is the client's mistake (400). */
export function decodePathSegment(raw: string, what: string): string {
  try {
    return decodeURIComponent(raw);
  } catch (cause) {
    throw new FaasError(
      "BAD_REQUEST",
      `${what} ${JSON.stringify(raw.length > 200 ? `${raw.slice(0, 200)}…` : raw)} is not valid percent-encoding (RFC 3986, UTF-8)`,
      { cause },
    );
  }
}

export function toFaasError(err: unknown, fallback: "INTERNAL" | "RUNNER_UNAVAILABLE" = "INTERNAL"): FaasError {
  if (err instanceof FaasError) return err;
  return new FaasError(fallback, err instanceof Error ? err.message : String(err), { cause: err });
}

export function sendError(res: ServerResponse, err: unknown, extraHeaders?: Record<string, string>): void {
  const e = toFaasError(err);
  if (res.headersSent) {
    res.destroy(e);
    return;
  }
  const body = JSON.stringify(e.toBody());
  const headers: Record<string, string | number> = {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
    // Tells platform errors from a function's own error responses.
    "x-faas-error": e.code,
    ...extraHeaders,
  };
  if (e.status === 503) headers["retry-after"] = "1";
  res.writeHead(e.status, headers);
  res.end(body);
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

/** Reads a whole (small) body, refusing more than `limitBytes`. */
export async function readBody(req: IncomingMessage, limitBytes: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"] ?? 0);
  if (declared > limitBytes)
    throw new FaasError("BODY_TOO_LARGE", `request body of ${declared} bytes exceeds the ${limitBytes}-byte limit`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limitBytes) throw new FaasError("BODY_TOO_LARGE", `request body exceeds the ${limitBytes}-byte limit`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

export async function readJson(req: IncomingMessage, limitBytes: number): Promise<unknown> {
  const body = await readBody(req, limitBytes);
  try {
    return JSON.parse(body.toString("utf8"));
  } catch (cause) {
    throw new FaasError("BAD_REQUEST", `request body is not valid JSON: ${(cause as Error).message}`, { cause });
  }
}
