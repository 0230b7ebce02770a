/**
 * The Node.js runner, through its real process and HTTP surface
 * (docs/runner-protocol.md, packages/runner-node/README.md).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { ERROR_STATUS } from "../../packages/api/src/errors.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const MAIN = join(ROOT, "packages/runner-node/dist/main.js");

interface Runner {
  proc: ChildProcess;
  port: number;
  base: string;
  stdout: string[];
  stderr: string[];
  exited: Promise<number | null>;
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

beforeAll(() => {
  execFileSync("npx", ["tsc", "-b", "packages/runner-node"], { cwd: ROOT, stdio: "inherit" });
});

async function startRunner(env: Record<string, string> = {}): Promise<Runner> {
  const proc = spawn(process.execPath, [MAIN], {
    env: { ...process.env, FAAS_PORT: "0", FAAS_HOST: "127.0.0.1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  cleanups.push(async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
    await exited;
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  createInterface({ input: proc.stderr! }).on("line", (line) => stderr.push(line));
  const port = await new Promise<number>((resolve, reject) => {
    proc.once("exit", (code) => reject(new Error(`runner exited (${code}) before listening: ${stderr.join("\n")}`)));
    createInterface({ input: proc.stdout! }).on("line", (line) => {
      stdout.push(line);
      if (line.includes('"listening"')) resolve((JSON.parse(line) as { port: number }).port);
    });
  });
  return { proc, port, base: `http://127.0.0.1:${port}`, stdout, stderr, exited };
}

interface Spec {
  name?: string;
  code: string;
  handler?: string;
  timeoutSeconds?: number;
  env?: Record<string, string>;
}

function specialize(r: Runner, spec: Spec): Promise<Response> {
  return fetch(`${r.base}/specialize`, {
    method: "POST",
    body: JSON.stringify({ name: "fn", runtime: "nodejs", handler: "main.handle", timeoutSeconds: 5, ...spec }),
  });
}

async function readyRunner(spec: Spec): Promise<Runner> {
  const r = await startRunner();
  const res = await specialize(r, spec);
  expect(res.status, await res.clone().text()).toBe(200);
  return r;
}

async function errorOf(res: Response): Promise<{ code: string; message: string; function?: string }> {
  return ((await res.json()) as { error: { code: string; message: string; function?: string } }).error;
}

const ROUTER = `
export async function handle(req) {
  const url = new URL(req.url);
  switch (url.searchParams.get("kind")) {
    case "response": return new Response("made", { status: 201, headers: [["x-made", "yes"], ["set-cookie", "a=1"], ["set-cookie", "b=2"]] });
    case "string": return "plain text";
    case "object": return { hello: "world", n: 1 };
    case "array": return [1, "two"];
    case "bytes": return new Uint8Array([0, 1, 254, 255]);
    case "buffer": return new Uint8Array([9, 8, 7]).buffer;
    case "null": return null;
    case "undefined": return undefined;
  }
  return "default";
}`;

describe("runner-node: lifecycle", () => {
  it("starts generic, becomes ready after POST /specialize", async () => {
    const r = await startRunner();
    expect(r.stdout[0] && JSON.parse(r.stdout[0])).toEqual({
      event: "listening",
      port: r.port,
      pid: r.proc.pid,
      runtime: "nodejs",
    });
    expect((await fetch(`${r.base}/healthz`)).status).toBe(200);
    const generic = await fetch(`${r.base}/readyz`);
    expect([generic.status, await generic.json()]).toEqual([503, { status: "generic" }]);
    const early = await fetch(`${r.base}/invoke`);
    expect([early.status, (await errorOf(early)).code]).toEqual([503, "RUNNER_NOT_SPECIALIZED"]);

    const res = await specialize(r, { name: "hello", code: 'export const handle = () => "hello from runner";' });
    const body = (await res.json()) as { function: string; loadMs: number };
    expect([res.status, body.function, typeof body.loadMs]).toEqual([200, "hello", "number"]);
    const ready = await fetch(`${r.base}/readyz`);
    expect([ready.status, await ready.json()]).toEqual([200, { status: "ready", function: "hello" }]);
    expect(await (await fetch(`${r.base}/invoke`)).text()).toBe("hello from runner");
  });

  it("specializes at start from a ConfigMap-like code directory (symlinked files, code beside function.json)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "faas-codedir-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const data = join(dir, "..2026_01_01");
    await mkdir(data);
    await writeFile(
      join(data, "function.json"),
      JSON.stringify({ name: "from-dir", runtime: "nodejs", handler: "app.run", env: { GREETING: "hi from dir" } }),
    );
    await writeFile(join(data, "app.mjs"), "export function run() { return process.env.GREETING; }");
    await symlink("..2026_01_01", join(dir, "..data"));
    await symlink("..data/function.json", join(dir, "function.json"));
    await symlink("..data/app.mjs", join(dir, "app.mjs"));

    const r = await startRunner({ FAAS_CODE_DIR: dir });
    // A call racing the start-up load waits for it rather than failing.
    expect(await (await fetch(`${r.base}/invoke`)).text()).toBe("hi from dir");
    expect(await (await fetch(`${r.base}/readyz`)).json()).toEqual({ status: "ready", function: "from-dir" });
  });

  it("re-specializing: same function is idempotent (200), another function is 409", async () => {
    const code = 'export const handle = () => "one";';
    const r = await startRunner();
    const first = (await (await specialize(r, { name: "one", code })).json()) as { loadMs: number };
    const again = await specialize(r, { name: "one", code });
    expect([again.status, await again.json()]).toEqual([200, { function: "one", loadMs: first.loadMs }]);
    const other = await specialize(r, { name: "two", code: 'export const handle = () => "two";' });
    expect([other.status, (await errorOf(other)).code]).toEqual([409, "CONFLICT"]);
    const changed = await specialize(r, { name: "one", code: 'export const handle = () => "changed";' });
    expect(changed.status).toBe(409);
    expect(await (await fetch(`${r.base}/invoke`)).text()).toBe("one");
  });

  it("code that fails to load → 400, runner stays generic and can be specialized afterwards", async () => {
    const r = await startRunner();
    const syntax = await specialize(r, { code: "export function handle( {" });
    const err = await errorOf(syntax);
    expect([syntax.status, err.code]).toEqual([400, "FUNCTION_LOAD_FAILED"]);
    expect(err.message).toMatch(/SyntaxError/);

    const noExport = await specialize(r, { code: "export const other = 1;", handler: "main.handle" });
    expect([noExport.status, (await errorOf(noExport)).message]).toEqual([
      400,
      expect.stringMatching(/no function "handle"/),
    ]);
    const badHandler = await specialize(r, { code: "export default () => 1;", handler: "nodot" });
    expect([badHandler.status, (await errorOf(badHandler)).message]).toEqual([400, expect.stringMatching(/^handler:/)]);
    const notJson = await fetch(`${r.base}/specialize`, { method: "POST", body: "{nope" });
    expect(notJson.status).toBe(400);

    expect((await fetch(`${r.base}/readyz`)).status).toBe(503);
    expect((await specialize(r, { name: "ok", code: "export default () => 'recovered';" })).status).toBe(200);
    expect(await (await fetch(`${r.base}/invoke`)).text()).toBe("recovered");
  });

  it("SIGTERM finishes the in-flight call, refuses new connections, exits 0", async () => {
    const r = await readyRunner({
      code: "export async function handle() { await new Promise((r) => setTimeout(r, 600)); return 'finished'; }",
    });
    const inFlight = fetch(`${r.base}/invoke`);
    await new Promise((resolve) => setTimeout(resolve, 150));
    r.proc.kill("SIGTERM");
    const res = await inFlight;
    expect([res.status, await res.text(), res.headers.get("x-faas-runner-state")]).toEqual([
      200,
      "finished",
      "draining",
    ]);
    expect(await r.exited).toBe(0);
    await expect(fetch(`${r.base}/healthz`)).rejects.toThrow();
  });

  it("answers malformed HTTP with 400 JSON and keeps serving", async () => {
    const r = await readyRunner({ code: "export default () => 'still here';" });
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = connect(r.port, "127.0.0.1", () => socket.write("GARBAGE\r\n\r\n"));
      let data = "";
      socket.on("data", (chunk) => (data += chunk.toString()));
      socket.on("end", () => resolve(data));
      socket.on("error", reject);
    });
    expect(reply).toMatch(/^HTTP\/1\.1 400/);
    expect(reply).toContain('"code":"BAD_REQUEST"');
    expect(await (await fetch(`${r.base}/invoke`)).text()).toBe("still here");
    expect((await fetch(`${r.base}/nowhere`)).status).toBe(404);
  });

  it("reports error statuses that match the platform's catalogue", async () => {
    const { RUNNER_ERROR_STATUS } = (await import(join(ROOT, "packages/runner-node/dist/errors.js"))) as {
      RUNNER_ERROR_STATUS: Record<string, number>;
    };
    expect(Object.keys(RUNNER_ERROR_STATUS).length).toBeGreaterThan(10);
    for (const [code, status] of Object.entries(RUNNER_ERROR_STATUS)) {
      expect([code, ERROR_STATUS[code as keyof typeof ERROR_STATUS]]).toEqual([code, status]);
    }
  });
});

describe("runner-node: handler API", () => {
  it("passes method, path, query, headers and body to the handler as a Fetch Request", async () => {
    const r = await readyRunner({
      code: `export async function handle(req) {
        const url = new URL(req.url);
        return { method: req.method, path: url.pathname, q: url.searchParams.getAll("q"), h: req.headers.get("x-test"), body: await req.json() };
      }`,
    });
    const res = await fetch(`${r.base}/invoke/a/b%20c?q=1&q=2`, {
      method: "PUT",
      headers: { "x-test": "yes" },
      body: JSON.stringify({ n: 42 }),
    });
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(await res.json()).toEqual({ method: "PUT", path: "/a/b%20c", q: ["1", "2"], h: "yes", body: { n: 42 } });
    const root = await fetch(`${r.base}/invoke?q=x`, { method: "POST", body: "null" });
    expect(await root.json()).toMatchObject({ method: "POST", path: "/", q: ["x"] });
  });

  it("passes binary bodies through unchanged in both directions", async () => {
    const r = await readyRunner({
      code: "export default async (req) => new Uint8Array(await req.arrayBuffer()).reverse();",
    });
    const sent = Uint8Array.from({ length: 70_000 }, (_, i) => i % 256);
    const res = await fetch(`${r.base}/invoke`, { method: "POST", body: sent });
    expect(res.headers.get("content-type")).toBe("application/octet-stream");
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(sent.slice().reverse());
  });

  it.each([
    ["response", 201, "text/plain;charset=UTF-8", "made"],
    ["string", 200, "text/plain; charset=utf-8", "plain text"],
    ["object", 200, "application/json", '{"hello":"world","n":1}'],
    ["array", 200, "application/json", '[1,"two"]'],
    ["bytes", 200, "application/octet-stream", "\u0000\u0001\ufffd\ufffd"],
    ["buffer", 200, "application/octet-stream", "\t\b\u0007"],
    ["null", 204, null, ""],
    ["undefined", 204, null, ""],
  ])("maps a returned %s to status %i", async (kind, status, type, body) => {
    const r = await readyRunner({ code: ROUTER });
    const res = await fetch(`${r.base}/invoke?kind=${kind}`);
    expect([res.status, res.headers.get("content-type"), await res.text()]).toEqual([status, type, body]);
    if (kind === "response") {
      expect(res.headers.get("x-made")).toBe("yes");
      expect(res.headers.getSetCookie()).toEqual(["a=1", "b=2"]);
    }
  });

  it("falls back to the default export when the named one is absent; console.log reaches stdout", async () => {
    const r = await readyRunner({
      handler: "main.missing",
      code: "export default () => { console.log('user log line'); return 'default export'; };",
    });
    expect(await (await fetch(`${r.base}/invoke`)).text()).toBe("default export");
    await expect.poll(() => r.stdout.includes("user log line")).toBe(true);
  });

  it("a module with top-level await loads too, and import.meta.url names the module file either way", async () => {
    // Loaded with require() when it can be, import() when it has top-level await: the module sees no difference.
    const code = (tla: boolean) =>
      `${tla ? "const word = await Promise.resolve('awaited');\n" : "const word = 'plain';\n"}` +
      "export function handle() { return word + ' ' + (import.meta.url.startsWith('file://') && import.meta.url.endsWith('/main.mjs')); }\n";
    for (const [tla, answer] of [
      [true, "awaited true"],
      [false, "plain true"],
    ] as const) {
      const r = await readyRunner({ code: code(tla) });
      expect(await (await fetch(`${r.base}/invoke`)).text()).toBe(answer);
    }
  });
});

describe("runner-node: failures", () => {
  it("a handler that throws → 500 HANDLER_ERROR naming the error, stack on stderr, next call OK", async () => {
    const r = await readyRunner({
      name: "thrower",
      code: "export function handle(req) { if (new URL(req.url).searchParams.has('boom')) null.x; return 'fine'; }",
    });
    const res = await fetch(`${r.base}/invoke?boom`);
    expect(res.status).toBe(500);
    expect(await errorOf(res)).toEqual({
      code: "HANDLER_ERROR",
      message: "TypeError: Cannot read properties of null (reading 'x')",
      function: "thrower",
    });
    await expect.poll(() => r.stderr.some((l) => l.includes('"handler-error"') && l.includes("main.mjs"))).toBe(true);
    expect(await (await fetch(`${r.base}/invoke`)).text()).toBe("fine");
  });

  it("an infinite loop → 504 at timeoutSeconds, the call queued behind it → 502, the next call succeeds", async () => {
    const r = await readyRunner({
      name: "looper",
      timeoutSeconds: 1,
      code: "export function handle(req) { if (new URL(req.url).searchParams.has('loop')) while (true) {} return 'alive'; }",
    });
    const started = performance.now();
    const looping = fetch(`${r.base}/invoke?loop`);
    // Sent well before the first call's deadline, so it is still waiting when the worker is replaced.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const queued = fetch(`${r.base}/invoke`);
    const res = await looping;
    expect(performance.now() - started).toBeLessThan(2500);
    expect([res.status, await errorOf(res)]).toEqual([
      504,
      expect.objectContaining({ code: "HANDLER_TIMEOUT", function: "looper" }),
    ]);
    const victim = await queued;
    expect([victim.status, (await errorOf(victim)).code]).toEqual([502, "RUNNER_UNAVAILABLE"]);
    const next = performance.now();
    expect(await (await fetch(`${r.base}/invoke`)).text()).toBe("alive");
    expect(performance.now() - next).toBeLessThan(1000);
  });

  it("an async handler past timeoutSeconds → 504, while other calls on that (responsive) worker still complete", async () => {
    const r = await readyRunner({
      timeoutSeconds: 1,
      code: "export async function handle(req) { const ms = Number(new URL(req.url).searchParams.get('ms')); await new Promise((r) => setTimeout(r, ms)); return 'slept ' + ms; }",
    });
    const hung = fetch(`${r.base}/invoke?ms=60000`);
    await new Promise((resolve) => setTimeout(resolve, 600));
    const slow = fetch(`${r.base}/invoke?ms=600`); // ends ~200 ms after the first call's timeout
    expect((await hung).status).toBe(504);
    const res = await slow;
    expect([res.status, await res.text()]).toEqual([200, "slept 600"]);
    expect(await (await fetch(`${r.base}/invoke?ms=0`)).text()).toBe("slept 0");
  });

  it.each([
    ["process.exit in the handler", "process.exit(3)"],
    [
      "an uncaught async error",
      "setTimeout(() => { throw new Error('late') }, 0); await new Promise((r) => setTimeout(r, 1000))",
    ],
  ])("a worker crash (%s) → 502 RUNNER_CRASHED, the next call succeeds", async (_, crash) => {
    const r = await readyRunner({
      name: "crasher",
      code: `export async function handle(req) { if (new URL(req.url).searchParams.has('crash')) { ${crash}; } return 'survived'; }`,
    });
    const res = await fetch(`${r.base}/invoke?crash`);
    expect([res.status, await errorOf(res)]).toEqual([
      502,
      expect.objectContaining({ code: "RUNNER_CRASHED", function: "crasher" }),
    ]);
    expect(await (await fetch(`${r.base}/invoke`)).text()).toBe("survived");
    expect(r.proc.exitCode).toBeNull();
  });
});
