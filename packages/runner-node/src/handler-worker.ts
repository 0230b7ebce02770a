/**
 * Runs inside the worker thread: imports the user's module, turns each call
 * into a Fetch `Request`, runs the handler and turns what it returns into one
 * result message. Everything that can hang or crash lives here, so the HTTP
 * thread can terminate this thread and start another.
 */
import { rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parentPort, workerData } from "node:worker_threads";
import { describeThrown } from "./errors.js";
import type { FromWorker, ToWorker, WorkerInit } from "./worker-protocol.js";

type Handler = (req: Request) => unknown;

const port = parentPort;
if (!port) throw new Error("handler-worker.js must run in a worker thread");

let handler: Handler | undefined;
// Calls that arrive while the module is still importing wait for it.
let loading: Promise<void> | undefined;
let loadError: string | undefined;
const TEXT = ["content-type", "text/plain; charset=utf-8"];
const JSON_TYPE = ["content-type", "application/json"];
const OCTETS = ["content-type", "application/octet-stream"];
const BODYLESS = new Set(["GET", "HEAD"]);
// Set by node from the connection, not by the handler.
const SKIPPED_RESPONSE_HEADERS = new Set(["content-length", "transfer-encoding", "connection", "keep-alive"]);

function post(msg: FromWorker, transfer?: ArrayBuffer[]): void {
  port?.postMessage(msg, transfer);
}

const requireModule = createRequire(import.meta.url);

/**
 * Imports a module file. `require()` of an ES module loads its whole graph
 * synchronously (the file read in this thread, no loader round trips), ~0.3 ms
 * less than `import()` on a cold start; a graph with top-level await cannot be
 * required, so it is imported. The module and its `import.meta` are the same
 * either way (node's one ESM cache).
 */
async function importModule(url: string): Promise<Record<string, unknown>> {
  try {
    return requireModule(fileURLToPath(url)) as Record<string, unknown>;
  } catch (err) {
    if ((err as NodeJS.ErrnoException | undefined)?.code !== "ERR_REQUIRE_ASYNC_MODULE") throw err;
    return (await import(url)) as Record<string, unknown>;
  }
}

async function load(url: string, exportName: string, code: string | undefined): Promise<void> {
  try {
    if (code !== undefined) writeFileSync(fileURLToPath(url), code);
    const mod = await importModule(url);
    const fn = mod[exportName] ?? mod.default;
    if (typeof fn !== "function") {
      const exported = Object.keys(mod).join(", ") || "nothing";
      throw new TypeError(
        `module exports no function "${exportName}" and no default function (it exports: ${exported})`,
      );
    }
    handler = fn as Handler;
    post({ t: "loaded" });
  } catch (err) {
    loadError = describeThrown(err);
    post({ t: "load-failed", message: loadError, stack: (err as Error | undefined)?.stack });
  }
}

function buildRequest(msg: Extract<ToWorker, { t: "call" }>): Request {
  const headers = new Headers();
  const raw = msg.headers;
  for (let i = 0; i < raw.length; i += 2) headers.append(raw[i] as string, raw[i + 1] as string);
  const init: RequestInit & { duplex?: "half" } = { method: msg.method, headers };
  if (msg.body && !BODYLESS.has(msg.method)) {
    init.body = msg.body;
    init.duplex = "half";
  }
  return new Request(`http://localhost${msg.path}`, init);
}

async function fromResponse(id: number, res: Response): Promise<void> {
  const headers: string[] = [];
  for (const [name, value] of res.headers) {
    if (!SKIPPED_RESPONSE_HEADERS.has(name)) headers.push(name, value);
  }
  const body = res.body ? await res.arrayBuffer() : null;
  post({ t: "result", id, status: res.status, headers, body }, body ? [body] : undefined);
}

function copyBytes(view: ArrayBufferView): ArrayBuffer {
  // A view may share its buffer (Buffer pool, a slice): copy exactly its bytes.
  const out = new Uint8Array(view.byteLength);
  out.set(new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
  return out.buffer;
}

async function reply(id: number, value: unknown): Promise<void> {
  if (value instanceof Response) return fromResponse(id, value);
  if (typeof value === "string") return post({ t: "result", id, status: 200, headers: TEXT, body: value });
  if (value === null || value === undefined) return post({ t: "result", id, status: 204, headers: [], body: null });
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) {
    const body = value instanceof ArrayBuffer ? value.slice(0) : copyBytes(value);
    return post({ t: "result", id, status: 200, headers: OCTETS, body }, [body]);
  }
  const json = JSON.stringify(value);
  if (json === undefined) throw new TypeError(`handler returned a ${typeof value}, which has no JSON form`);
  post({ t: "result", id, status: 200, headers: JSON_TYPE, body: json });
}

async function call(msg: Extract<ToWorker, { t: "call" }>): Promise<void> {
  try {
    if (!handler && loading) await loading;
    if (!handler) throw new Error(loadError ? `function failed to load: ${loadError}` : "no function loaded");
    await reply(msg.id, await handler(buildRequest(msg)));
  } catch (err) {
    post({ t: "threw", id: msg.id, message: describeThrown(err), stack: (err as Error | undefined)?.stack });
  }
}

/** Modules imported while generic: node's ESM file loader takes ~2-6 ms an import until it is warm, ~1 ms after. */
const WARM_IMPORTS = 24;

/**
 * Runs the load and call paths on throwaway modules and requests while the
 * runner is generic: `Request`/`Response` load undici lazily (~20 ms), the ESM
 * loader starts on the first file import and stays slow for the next few, and
 * the reply path (structured clone, transfer) is cold. Paid here, they stay
 * off a cold start. Ends by telling the HTTP thread, which only then says it
 * is listening (so a pooled runner is a warm one).
 */
async function warmUp(): Promise<void> {
  const { warmDir, warmUp: wanted } = workerData as WorkerInit;
  if (!wanted) return;
  await import("./warm-module.js");
  for (let i = 0; i < WARM_IMPORTS; i++) {
    const file = join(warmDir, `faas-warm-${i}.mjs`);
    writeFileSync(file, `export const handle = (req) => new Response("warm ${i}");\n`);
    const mod = (await importModule(pathToFileURL(file).href)) as { handle: Handler };
    rmSync(file, { force: true });
    const req = buildRequest({
      t: "call",
      id: 0,
      method: i % 2 === 0 ? "GET" : "POST",
      path: "/?warm=1",
      headers: ["content-type", "text/plain"],
      body: i % 2 === 0 ? null : new ArrayBuffer(1),
    });
    new URL(req.url).searchParams.get("warm");
    if (req.body) await req.text();
    // id 0 is never a call: the HTTP thread drops the result after the same steps as a real one.
    await reply(0, await mod.handle(req));
    await reply(0, `warm ${i}`);
  }
}
const warm = warmUp()
  .catch(() => undefined)
  .then(() => post({ t: "warm" }));

port.on("message", (msg: ToWorker) => {
  switch (msg.t) {
    case "call":
      void call(msg);
      break;
    case "ping":
      post({ t: "pong", id: msg.id });
      break;
    case "load":
      loading = warm.then(() => load(msg.url, msg.exportName, msg.code));
      break;
  }
});
