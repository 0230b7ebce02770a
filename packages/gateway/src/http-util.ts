/**
 * The gateway's edge: every error becomes a response here, in one shape.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { FaasError } from "@faas/api";

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
