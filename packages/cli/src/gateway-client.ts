/**
 * Finds the gateway (flag, FAAS_GATEWAY, or the `gateway.json` that `faas up`
 * writes into the data dir) and talks HTTP to it. Connection failures become
 * "not running" (exit 3); API errors keep the server's own message.
 */
import { readFile } from "node:fs/promises";
import { type IncomingHttpHeaders, type IncomingMessage, request } from "node:http";
import { parseErrorBody } from "@faas/api";
import { stateFile } from "@faas/local";
import { CliError, EXIT, exitCodeFor } from "./exit-codes.js";

export interface GatewayState {
  url: string;
  token: string;
  pid: number;
}

export interface HttpResult {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface CallOptions {
  method: string;
  headers?: Record<string, string | string[]>;
  body?: Buffer | string;
  signal?: AbortSignal;
}

const START_HINT = "start it with `npm start` or `faas up` (in another terminal)";

export async function readGatewayState(dataDir: string): Promise<GatewayState | undefined> {
  let text: string;
  try {
    text = await readFile(stateFile(dataDir), "utf8");
  } catch {
    return undefined;
  }
  try {
    const value = JSON.parse(text) as Partial<GatewayState>;
    if (typeof value.url === "string" && typeof value.token === "string" && typeof value.pid === "number") {
      return value as GatewayState;
    }
  } catch {
    // A half-written or foreign file reads as "no gateway recorded".
  }
  return undefined;
}

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

export class GatewayClient {
  private constructor(
    readonly url: string,
    private readonly token: string | undefined,
    private readonly where: string,
  ) {}

  /**
   * `urlOverride` (--gateway or FAAS_GATEWAY) wins; otherwise the data dir's
   * running gateway; otherwise the default local address.
   */
  static async resolve(opts: {
    dataDir: string;
    urlOverride: string | undefined;
    token: string | undefined;
    defaultUrl: string;
  }): Promise<GatewayClient> {
    const state = await readGatewayState(opts.dataDir);
    if (opts.urlOverride !== undefined) {
      const url = opts.urlOverride.replace(/\/+$/, "");
      const token = opts.token ?? (state?.url === url ? state.token : undefined);
      return new GatewayClient(url, token, url);
    }
    if (state !== undefined) {
      return new GatewayClient(state.url, opts.token ?? state.token, `${state.url} (from ${stateFile(opts.dataDir)})`);
    }
    return new GatewayClient(opts.defaultUrl, opts.token, `${opts.defaultUrl} (no ${stateFile(opts.dataDir)})`);
  }

  /** Admin API call; resolves with the parsed JSON body, throws CliError on any failure. */
  async admin(method: string, path: string, body?: unknown): Promise<unknown> {
    const res = await this.call(`/admin${path}`, {
      method,
      headers: this.#adminHeaders(body !== undefined ? { "content-type": "application/json" } : {}),
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const parsed = parseJson(res.body);
    if (res.status >= 400) throw this.apiError(res.status, parsed, res.body);
    return parsed;
  }

  /** Admin call whose response is streamed (logs). */
  async adminStream(path: string, signal: AbortSignal): Promise<IncomingMessage> {
    const res = await this.#send(`/admin${path}`, { method: "GET", headers: this.#adminHeaders({}), signal });
    if (res.statusCode !== undefined && res.statusCode >= 400) {
      const body = await collect(res);
      throw this.apiError(res.statusCode, parseJson(body), body);
    }
    return res;
  }

  #adminHeaders(extra: Record<string, string>): Record<string, string> {
    if (this.token === undefined) {
      throw new CliError(
        EXIT.UNAVAILABLE,
        `no running gateway found: ${this.where}`,
        `${START_HINT}; for a gateway started elsewhere, pass --gateway URL and set FAAS_ADMIN_TOKEN`,
      );
    }
    return { ...extra, authorization: `Bearer ${this.token}` };
  }

  /** A whole request and response, body buffered. */
  async call(path: string, opts: CallOptions): Promise<HttpResult> {
    const res = await this.#send(path, opts);
    const body = await collect(res);
    return { status: res.statusCode ?? 0, headers: res.headers, body };
  }

  #send(path: string, opts: CallOptions): Promise<IncomingMessage> {
    return new Promise<IncomingMessage>((resolve, reject) => {
      const req = request(
        `${this.url}${path}`,
        { method: opts.method, headers: opts.headers, signal: opts.signal },
        resolve,
      );
      req.once("error", (err: NodeJS.ErrnoException) => {
        if (err.name === "AbortError") return reject(err);
        reject(
          new CliError(
            EXIT.UNAVAILABLE,
            `cannot reach the gateway at ${this.where}: ${err.code ?? err.message}`,
            START_HINT,
            {
              cause: err,
            },
          ),
        );
      });
      req.end(opts.body);
    });
  }

  /** The server's `{"error":{"code","message"}}` as a CliError with a matching exit code. */
  apiError(status: number, parsed: unknown, raw: Buffer): CliError {
    const e = parseErrorBody(parsed);
    if (e === undefined)
      return new CliError(EXIT.FAILED, `HTTP ${status}: ${raw.toString("utf8").slice(0, 200) || "(empty body)"}`);
    const hint =
      e.code === "FUNCTION_NOT_FOUND" && !e.message.includes("faas list")
        ? "`faas list` shows the deployed functions"
        : e.code === "UNAUTHORIZED"
          ? "the token comes from gateway.json in the data dir (--data-dir) or FAAS_ADMIN_TOKEN"
          : undefined;
    return new CliError(exitCodeFor(e.code), e.message, hint);
  }
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString("utf8"));
  } catch {
    return undefined;
  }
}

async function collect(res: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of res as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}
