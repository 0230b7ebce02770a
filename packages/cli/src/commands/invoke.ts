/**
 * `faas invoke`: one request to `/invoke/<name>`, curl-like. The body goes to
 * stdout untouched (on a terminal, a body without a final newline gets one, so
 * the prompt starts on its own line); status, headers and the cold-start
 * breakdown go to stderr (or stdout with -i), so `faas invoke f > out` keeps
 * only the body.
 */
import { readFile } from "node:fs/promises";
import type { IncomingHttpHeaders } from "node:http";
import { parseErrorBody } from "@faas/api";
import type { CommandContext } from "../context.js";
import { CliError, EXIT } from "../exit-codes.js";
import { functionGateway } from "../function-gateway.js";
import type { HttpResult } from "../gateway-client.js";

export interface InvokeOptions {
  data?: string;
  header: string[];
  method?: string;
  path?: string;
  include?: boolean;
  json?: boolean;
}

/** Only slower calls get a spinner: a warm call should print without flicker. */
const SPINNER_AFTER_MS = 300;

export async function runInvoke(ctx: CommandContext, name: string, opts: InvokeOptions): Promise<number> {
  const { ui } = ctx;
  const body = opts.data === undefined ? undefined : await readData(opts.data);
  const headers = parseHeaders(opts.header);
  if (body !== undefined && !Object.keys(headers).some((h) => h === "content-type")) {
    headers["content-type"] = contentTypeOf(body);
  }
  const method = (opts.method ?? (body !== undefined ? "POST" : "GET")).toUpperCase();
  const gateway = await functionGateway(ctx.cfg);
  const path = `${gateway.invokePath(name)}${subPath(opts.path)}`;

  let spinner: ReturnType<typeof ui.spinner> | undefined;
  const timer = setTimeout(() => {
    spinner = ui.spinner(`waiting for ${name} (cold start…)`, { quiet: opts.json });
  }, SPINNER_AFTER_MS);
  let res: HttpResult;
  try {
    res = await gateway.client.call(path, { method, headers, ...(body !== undefined ? { body } : {}) });
  } finally {
    clearTimeout(timer);
    spinner?.stop();
    await gateway.close();
  }

  const coldStart = res.headers["x-faas-cold-start"] === "true";
  if (opts.json) {
    ui.out(JSON.stringify({ status: res.status, headers: res.headers, body: decodeBody(res), coldStart }, null, 2));
  } else {
    if (opts.include) printHead(ctx, res);
    if (coldStart && (ui.stderrIsTty || opts.include)) ui.note(ui.ce.dim(coldStartLine(res.headers)));
  }
  if (res.status < 400) {
    if (!opts.json) writeBody(ui.stdout, res.body);
    return EXIT.OK;
  }
  return failure(ctx, name, res, opts);
}

/** The body as it came; on a terminal, followed by a newline when it does not end with one. */
export function writeBody(stdout: NodeJS.WriteStream, body: Buffer): void {
  stdout.write(body);
  if (stdout.isTTY === true && body.length > 0 && body[body.length - 1] !== 0x0a) stdout.write("\n");
}

/** ≥ 400: the platform's own errors become one line; a function's own error body is shown as is. */
function failure(ctx: CommandContext, name: string, res: HttpResult, opts: InvokeOptions): number {
  const platformError = isJson(res.headers) ? parseErrorBody(safeJson(res.body)) : undefined;
  const exitCode = platformError?.code === "FUNCTION_NOT_FOUND" ? EXIT.NOT_FOUND : EXIT.FAILED;
  if (opts.json) return exitCode;
  if (platformError === undefined || opts.include) writeBody(ctx.ui.stdout, res.body);
  const message = platformError
    ? `${name}: ${platformError.message} (HTTP ${res.status} ${platformError.code})`
    : `${name} answered HTTP ${res.status}`;
  const hint =
    exitCode === EXIT.NOT_FOUND && !message.includes("faas list")
      ? "`faas list` shows the deployed functions; `faas deploy` adds one"
      : platformError?.code === "HANDLER_ERROR"
        ? `\`faas logs ${name}\` shows what the handler printed`
        : undefined;
  ctx.ui.error(new CliError(exitCode, message, hint));
  return exitCode;
}

function printHead(ctx: CommandContext, res: HttpResult): void {
  const { ui } = ctx;
  ui.stdout.write(`${ui.c.bold(`HTTP/1.1 ${res.status}`)}\n`);
  for (const [key, value] of Object.entries(res.headers)) {
    for (const v of Array.isArray(value) ? value : [value]) ui.stdout.write(`${ui.c.cyan(key)}: ${v}\n`);
  }
  ui.stdout.write("\n");
}

/** `server-timing: parked;dur=0.10, scaleup;dur=1.20, specialize;dur=4.00` → a readable line. */
export function coldStartLine(headers: IncomingHttpHeaders): string {
  const raw = headers["server-timing"];
  const timing = typeof raw === "string" ? raw : "";
  const parts = timing
    .split(",")
    .map((p) => p.trim().match(/^([\w-]+);dur=([\d.]+)/))
    .filter((m): m is RegExpMatchArray => m !== null)
    .map((m) => `${m[1]} ${Number(m[2]).toFixed(1)} ms`);
  return `cold start: ${parts.length > 0 ? parts.join(", ") : "(no timing)"}`;
}

async function readData(data: string): Promise<Buffer> {
  if (!data.startsWith("@")) return Buffer.from(data);
  const source = data.slice(1);
  if (source === "-") {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin as AsyncIterable<Buffer>) chunks.push(chunk);
    return Buffer.concat(chunks);
  }
  try {
    return await readFile(source);
  } catch (cause) {
    throw new CliError(EXIT.USAGE, `-d @${source}: cannot read the file`, undefined, { cause });
  }
}

function parseHeaders(lines: readonly string[]): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon <= 0) throw new CliError(EXIT.USAGE, `-H ${JSON.stringify(line)}: expected "Name: value"`);
    const key = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    const prev = headers[key];
    headers[key] = prev === undefined ? value : [...(Array.isArray(prev) ? prev : [prev]), value];
  }
  return headers;
}

function subPath(path: string | undefined): string {
  if (path === undefined || path === "" || path === "/") return "";
  return path.startsWith("/") || path.startsWith("?") ? path : `/${path}`;
}

/** What curl users expect without -H: JSON when it parses as JSON, text when it is text. */
function contentTypeOf(body: Buffer): string {
  const text = body.toString("utf8");
  const first = text.trimStart()[0];
  if ((first === "{" || first === "[") && safeJson(body) !== undefined) return "application/json";
  const isText = Buffer.from(text, "utf8").equals(body) && !text.includes("\0");
  return isText ? "text/plain; charset=utf-8" : "application/octet-stream";
}

function isJson(headers: IncomingHttpHeaders): boolean {
  return (headers["content-type"] ?? "").includes("json");
}

function safeJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString("utf8"));
  } catch {
    return undefined;
  }
}

function decodeBody(res: HttpResult): unknown {
  if (isJson(res.headers)) {
    const parsed = safeJson(res.body);
    if (parsed !== undefined) return parsed;
  }
  return res.body.toString("utf8");
}
