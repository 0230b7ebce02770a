/**
 * The runner protocol (docs/runner-protocol.md) as one table of cases, run
 * against both runners: each case names what it sends and what must come
 * back, and each runner supplies only how to start it and its code snippets.
 * A new protocol rule is a new row here, not a test per runner.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readdir, rm, stat, symlink, writeFile } from "node:fs/promises";
import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { ERROR_STATUS, MAX_CODE_BYTES, MAX_NAME_LENGTH, makeFunction, type Runtime, toLoadSpec } from "@faas/api";
import fc from "fast-check";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  LAYER_MEDIA_TYPE,
  MANIFEST_MEDIA_TYPE,
  PACKAGE_CONFIG_MEDIA_TYPE,
  pushPackage,
  type Registry,
  registrySkipReason,
  sha256,
  startRegistry,
  type TarEntry,
} from "../support/registry.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** What differs between the runners: how to start one, and code in its language. */
interface RunnerKind {
  runtime: Runtime;
  command: string;
  args: string[];
  env: Record<string, string>;
  /** The module file written into a code directory. */
  moduleFile: string;
  code: {
    hello: string;
    throws: string;
    slow: string;
    syntaxError: string;
    noHandler: string;
    spins: string;
    /** Answers how many times it has been called. */
    counter: string;
    /** Takes ~400 ms at import, then answers "loaded". */
    slowLoad: string;
    /** Answers "present" or "absent": whether the handler sees an x-faas-await-load header. */
    awaitHeader: string;
    /** Pads code to `bytes` with a comment. */
    pad(code: string, bytes: number): string;
  };
  /**
   * A package: a main module that imports a sibling module and dependencies and
   * reads a data file beside itself; `deps` go under `depsDir`; the handler answers `answer`.
   */
  pkg: { files: Record<string, string>; depsDir: string; deps: Record<string, string>; answer: string };
}

const KINDS: RunnerKind[] = [
  {
    runtime: "python",
    command: "python3",
    args: ["-m", "faas_runner"],
    env: { PYTHONPATH: join(ROOT, "packages/runner-python") },
    moduleFile: "main.py",
    code: {
      hello: 'def handle(req):\n    return "hello"\n',
      throws: 'def handle(req):\n    raise ValueError("kaboom")\n',
      slow: 'import time\ndef handle(req):\n    time.sleep(0.6)\n    return "finished"\n',
      syntaxError: "def handle(req:\n",
      noHandler: "other = 1\n",
      spins: "while True:\n    pass\n",
      counter: "calls = 0\ndef handle(req):\n    global calls\n    calls += 1\n    return str(calls)\n",
      slowLoad: 'import time\ntime.sleep(0.4)\ndef handle(req):\n    return "loaded"\n',
      awaitHeader:
        'def handle(req):\n    return "absent" if req.headers.get("x-faas-await-load") is None else "present"\n',
      pad: (code, bytes) => code + "#".repeat(bytes - Buffer.byteLength(code) - 1) + "\n",
    },
    pkg: {
      files: {
        "main.py": [
          "import os",
          "import fakedep",
          "import helper",
          "import pthdep",
          "",
          "with open(os.path.join(os.path.dirname(__file__), 'data', 'word.txt')) as f:",
          "    DATA = f.read().strip()",
          "",
          "def handle(req):",
          "    return f'{helper.WORD} {fakedep.WORD}+{pthdep.WORD} {DATA}'",
          "",
        ].join("\n"),
        "helper.py": "WORD = 'sibling'\n",
        "data/word.txt": "data\n",
      },
      depsDir: "site-packages",
      deps: {
        "site-packages/fakedep/__init__.py": "from .inner import WORD\n",
        "site-packages/fakedep/inner.py": "WORD = 'dep'\n",
        // A .pth file names a directory (relative to site-packages) to put on sys.path.
        "site-packages/extra.pth": "extra-dir\n",
        "site-packages/extra-dir/pthdep.py": "WORD = 'pth'\n",
      },
      answer: "sibling dep+pth data",
    },
  },
  {
    runtime: "nodejs",
    command: process.execPath,
    args: [join(ROOT, "packages/runner-node/dist/main.js")],
    env: {},
    moduleFile: "main.mjs",
    code: {
      hello: 'export const handle = () => "hello";\n',
      throws: 'export function handle() { throw new TypeError("kaboom"); }\n',
      slow: "export async function handle() { await new Promise((r) => setTimeout(r, 600)); return 'finished'; }\n",
      syntaxError: "export function handle( {\n",
      noHandler: "export const other = 1;\n",
      spins: "while (true) {}\n",
      counter: "let calls = 0;\nexport const handle = () => String(++calls);\n",
      slowLoad: 'await new Promise((r) => setTimeout(r, 400));\nexport const handle = () => "loaded";\n',
      awaitHeader: 'export const handle = (req) => (req.headers.has("x-faas-await-load") ? "present" : "absent");\n',
      pad: (code, bytes) => `${code}//${"x".repeat(bytes - Buffer.byteLength(code) - 3)}\n`,
    },
    pkg: {
      files: {
        "main.mjs": [
          'import { readFileSync } from "node:fs";',
          'import cjs from "fake-cjs";',
          'import { WORD as ESM } from "fake-esm";',
          'import { WORD } from "./helper.mjs";',
          'const DATA = readFileSync(new URL("./data/word.txt", import.meta.url), "utf8").trim();',
          'export const handle = () => [WORD, cjs.WORD + "+" + ESM, DATA].join(" ");',
          "",
        ].join("\n"),
        "helper.mjs": 'export const WORD = "sibling";\n',
        "data/word.txt": "data\n",
      },
      depsDir: "node_modules",
      deps: {
        "node_modules/fake-cjs/package.json": '{"name":"fake-cjs","version":"1.0.0","main":"lib/index.js"}\n',
        "node_modules/fake-cjs/lib/index.js": 'exports.WORD = require("./word.js");\n',
        "node_modules/fake-cjs/lib/word.js": 'module.exports = "dep";\n',
        // An ESM package that itself imports the CommonJS one (resolved from its own real path).
        "node_modules/fake-esm/package.json":
          '{"name":"fake-esm","version":"1.0.0","type":"module","exports":{".":"./index.js"}}\n',
        "node_modules/fake-esm/index.js":
          'import cjs from "fake-cjs";\nexport const WORD = cjs.WORD === "dep" ? "esm" : "?";\n',
      },
      answer: "sibling dep+esm data",
    },
  },
];

interface Runner {
  proc: ChildProcess;
  port: number;
  exited: Promise<number | null>;
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  error: { code: string; message: string; [k: string]: unknown };
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

beforeAll(() => {
  execFileSync("npx", ["tsc", "-b", "packages/runner-node"], { cwd: ROOT, stdio: "inherit" });
});

async function start(kind: RunnerKind, env: Record<string, string> = {}): Promise<Runner> {
  const proc = spawn(kind.command, kind.args, {
    env: { ...process.env, ...kind.env, FAAS_PORT: "0", FAAS_HOST: "127.0.0.1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  cleanups.push(async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
    await exited;
  });
  proc.stderr?.resume();
  const port = await new Promise<number>((resolve, reject) => {
    void exited.then((code) => reject(new Error(`runner exited with ${code} before listening`)));
    createInterface({ input: proc.stdout as NodeJS.ReadableStream }).on("line", (line) => {
      if (line.includes('"listening"')) resolve((JSON.parse(line) as { port: number }).port);
    });
  });
  return { proc, port, exited };
}

function send(
  r: Runner,
  method: string,
  path: string,
  body?: string,
  headers: Record<string, string> = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: r.port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let error = { code: "", message: "" };
        try {
          error = (JSON.parse(text) as { error?: Reply["error"] }).error ?? error;
        } catch {}
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text, error });
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

function sendWith(r: Runner, method: string, path: string, headers: Record<string, string>): Promise<Reply> {
  return send(r, method, path, undefined, headers);
}

/** Polls /readyz until it says `status`. */
async function waitForStatus(r: Runner, status: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if ((JSON.parse((await send(r, "GET", "/readyz")).body) as { status: string }).status === status) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`readyz never said ${status}`);
}

function spec(kind: RunnerKind, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: "fn",
    runtime: kind.runtime,
    handler: "main.handle",
    code: kind.code.hello,
    timeoutSeconds: 5,
    ...overrides,
  };
}

/** Any well-formed digest, for specs that are refused before it is used. */
const DIGEST = `sha256:${"a".repeat(64)}`;

async function tempDir(prefix = "faas-contract-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function writeFiles(root: string, files: Record<string, string>): Promise<void> {
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), text);
  }
}

const specialize = (r: Runner, body: unknown) =>
  send(r, "POST", "/specialize", typeof body === "string" ? body : JSON.stringify(body));

/** The runner's answer for each kind of bad load spec: 400 INVALID_SPEC, message starting with the field. */
const INVALID_SPECS: Array<{ name: string; body: (k: RunnerKind) => unknown; field?: string }> = [
  { name: "not JSON", body: () => "{nope" },
  { name: "not an object", body: () => "[1,2]" },
  { name: "no name", body: (k) => spec(k, { name: undefined }), field: "name" },
  {
    name: "another runtime",
    body: (k) => spec(k, { runtime: k.runtime === "python" ? "nodejs" : "python" }),
    field: "runtime",
  },
  { name: "handler without a dot", body: (k) => spec(k, { handler: "nodot" }), field: "handler" },
  { name: "timeoutSeconds 0", body: (k) => spec(k, { timeoutSeconds: 0 }), field: "timeoutSeconds" },
  { name: "timeoutSeconds a string", body: (k) => spec(k, { timeoutSeconds: "5" }), field: "timeoutSeconds" },
  { name: "env value not a string", body: (k) => spec(k, { env: { A: 1 } }), field: "env" },
  { name: "env name invalid", body: (k) => spec(k, { env: { "1A": "x" } }), field: "env" },
  { name: "empty code", body: (k) => spec(k, { code: "" }), field: "code" },
  { name: "both code and package", body: (k) => spec(k, { package: { digest: DIGEST, dir: "/x" } }), field: "package" },
  { name: "neither code nor package", body: (k) => spec(k, { code: undefined }), field: "code" },
  {
    name: "package digest not sha256:<64 hex>",
    body: (k) => spec(k, { code: undefined, package: { digest: "sha256:ABC", dir: "/x" } }),
    field: "package.digest",
  },
  {
    name: "package dir relative",
    body: (k) => spec(k, { code: undefined, package: { digest: DIGEST, dir: "pkg/root" } }),
    field: "package.dir",
  },
  {
    name: "package registry without repository",
    body: (k) => spec(k, { code: undefined, package: { digest: DIGEST, registry: "http://127.0.0.1:5000" } }),
    field: "package.repository",
  },
  {
    name: "package registry not http(s)://host[:port]",
    body: (k) =>
      spec(k, { code: undefined, package: { digest: DIGEST, registry: "ftp://r/x", repository: "default/fn" } }),
    field: "package.registry",
  },
  {
    name: "package with neither dir nor registry",
    body: (k) => spec(k, { code: undefined, package: { digest: DIGEST } }),
    field: "package",
  },
];

/** A runner started with a code directory (`FAAS_CODE_DIR`), killed at the end of the test: its exit and stderr. */
function runCodeDir(
  kind: (typeof KINDS)[number],
  dir: string,
  env: Record<string, string> = {},
): { exited: Promise<number | null>; stderr: () => string } {
  const proc = spawn(kind.command, kind.args, {
    env: { ...process.env, ...kind.env, FAAS_PORT: "0", FAAS_HOST: "127.0.0.1", FAAS_CODE_DIR: dir, ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  const exited = new Promise<number | null>((resolve) => proc.once("exit", resolve));
  cleanups.push(async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
    await exited;
  });
  let stderr = "";
  proc.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  return { exited, stderr: () => stderr };
}

describe.each(KINDS)("runner contract: $runtime", (kind) => {
  it("starts generic: listening line, healthz 200, readyz 503 generic, invoke 503 RUNNER_NOT_SPECIALIZED", async () => {
    const r = await start(kind);
    expect((await send(r, "GET", "/healthz")).status).toBe(200);
    const ready = await send(r, "GET", "/readyz");
    expect([ready.status, JSON.parse(ready.body)]).toEqual([503, { status: "generic" }]);
    const invoke = await send(r, "GET", "/invoke");
    expect([invoke.status, invoke.error.code]).toEqual([503, "RUNNER_NOT_SPECIALIZED"]);
    // The handler did not run: the caller may send the call again.
    expect(invoke.headers["x-faas-runner-state"]).toBe("generic");
  });

  it("an invocation that arrives while the code loads waits for it, then runs", async () => {
    const r = await start(kind);
    const loading = specialize(r, spec(kind, { name: "slow-load", code: kind.code.slowLoad }));
    await waitForStatus(r, "loading");
    const invoke = await send(r, "GET", "/invoke");
    expect([invoke.status, invoke.body]).toEqual([200, "loaded"]);
    expect((await loading).status).toBe(200);
  });

  it("x-faas-await-load: an invocation sent before POST /specialize waits for that function's load, and its handler does not see the header", async () => {
    const r = await start(kind);
    const early = sendWith(r, "GET", "/invoke", { "x-faas-await-load": "early 10000" });
    // The runner has read the invocation while still generic: it says so on /readyz, and the call is still open.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(JSON.parse((await send(r, "GET", "/readyz")).body)).toEqual({ status: "generic" });
    expect((await specialize(r, spec(kind, { name: "early", code: kind.code.awaitHeader }))).status).toBe(200);
    const res = await early;
    expect([res.status, res.body]).toEqual([200, "absent"]);
    // Its answer says how long the load took, for a caller that relays it before /specialize's answer.
    // A plain decimal, as the gateway reads it (parseLoadMs).
    expect(res.headers["x-faas-load-ms"]).toMatch(/^\d{1,9}(\.\d{1,6})?$/);
    // Once loaded, the header changes nothing and is still not the handler's; nothing was waited for.
    const later = await sendWith(r, "GET", "/invoke", { "x-faas-await-load": "early 10000" });
    expect([later.status, later.body, later.headers["x-faas-load-ms"]]).toEqual([200, "absent", undefined]);
  });

  it("x-faas-await-load: a load that fails answers the held invocations 503 RUNNER_NOT_SPECIALIZED with the load's reason", async () => {
    const r = await start(kind);
    const early = sendWith(r, "GET", "/invoke", { "x-faas-await-load": "broken 10000" });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const load = await specialize(r, spec(kind, { name: "broken", code: kind.code.syntaxError }));
    expect([load.status, load.error.code]).toEqual([400, "FUNCTION_LOAD_FAILED"]);
    const res = await early;
    expect([res.status, res.error.code, res.headers["x-faas-runner-state"]]).toEqual([
      503,
      "RUNNER_NOT_SPECIALIZED",
      "generic",
    ]);
    expect(res.error.message.startsWith("the load failed: "), res.error.message).toBe(true);
    expect(res.error.message).toContain("SyntaxError");
    // Still generic and usable.
    expect((await specialize(r, spec(kind))).status).toBe(200);
    expect((await send(r, "GET", "/invoke")).body).toBe("hello");
  });

  it("x-faas-await-load: another function's load, or none within the time → 503 RUNNER_NOT_SPECIALIZED; never another function's handler", async () => {
    const r = await start(kind);
    const other = sendWith(r, "GET", "/invoke", { "x-faas-await-load": "someone-else 10000" });
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect((await specialize(r, spec(kind, { name: "fn" }))).status).toBe(200);
    for (const res of [
      await other,
      await sendWith(r, "GET", "/invoke", { "x-faas-await-load": "someone-else 10000" }),
    ]) {
      expect([res.status, res.error.code, res.headers["x-faas-runner-state"]]).toEqual([
        503,
        "RUNNER_NOT_SPECIALIZED",
        "generic",
      ]);
      expect(res.error.message).toContain("someone-else");
    }
  });

  it("x-faas-await-load: held invocations run once each, and a handler that throws or overruns answers as after the load (500, 504)", async () => {
    const held = (r: Runner, name: string) =>
      Array.from({ length: 3 }, () => sendWith(r, "GET", "/invoke", { "x-faas-await-load": `${name} 10000` }));
    const counting = await start(kind);
    const early = held(counting, "counter");
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect((await specialize(counting, spec(kind, { name: "counter", code: kind.code.counter }))).status).toBe(200);
    // Each held call reached the handler exactly once: 1, 2 and 3 in some order, and the next call is the 4th.
    expect((await Promise.all(early)).map((res) => [res.status, res.body]).sort()).toEqual([
      [200, "1"],
      [200, "2"],
      [200, "3"],
    ]);
    expect((await send(counting, "GET", "/invoke")).body).toBe("4");

    const thrower = await start(kind);
    const throwing = held(thrower, "thrower");
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect((await specialize(thrower, spec(kind, { name: "thrower", code: kind.code.throws }))).status).toBe(200);
    for (const res of await Promise.all(throwing)) {
      expect([res.status, res.error.code, res.error.function]).toEqual([500, "HANDLER_ERROR", "thrower"]);
      expect(res.error.message).toContain("kaboom");
    }

    const slow = await start(kind);
    const late = sendWith(slow, "GET", "/invoke", { "x-faas-await-load": "slow 10000" });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const load = specialize(slow, spec(kind, { name: "slow", code: kind.code.slow, timeoutSeconds: 0.2 }));
    const res = await late;
    // At its own deadline: had it waited for the handler (0.6 s), the answer would be 200 "finished".
    expect([res.status, res.error.code, res.error.function]).toEqual([504, "HANDLER_TIMEOUT", "slow"]);
    expect((await load).status).toBe(200);
  });

  it("x-faas-await-load: no specialization within the time → 503 RUNNER_NOT_SPECIALIZED", async () => {
    const r = await start(kind);
    const res = await sendWith(r, "GET", "/invoke", { "x-faas-await-load": "fn 150" });
    expect([res.status, res.error.code, res.headers["x-faas-runner-state"]]).toEqual([
      503,
      "RUNNER_NOT_SPECIALIZED",
      "generic",
    ]);
    expect(res.error.message).toContain("within 150 ms");
    expect((await specialize(r, spec(kind))).status).toBe(200);
    expect((await send(r, "GET", "/invoke")).body).toBe("hello");
  });

  it("x-faas-await-load: a malformed value is no wait at all: 503 at once, and the runner stays usable", async () => {
    const r = await start(kind);
    // No function, no time, a time that is not a positive number, a time and no function; then random tokens.
    const fixed = ["", "fn", "fn ", " 150", "fn abc", "fn -5", "fn 0", "fn NaN", "fn 1e400x"];
    const tokens = fc.sample(
      fc.array(fc.constantFrom(..."abcXYZ019-_.:/%"), { minLength: 0, maxLength: 24 }).map((cs) => cs.join("")),
      { numRuns: 25, seed: 9 },
    );
    for (const value of [...fixed, ...tokens]) {
      const started = performance.now();
      const res = await sendWith(r, "GET", "/invoke", { "x-faas-await-load": value });
      expect([res.status, res.error.code], JSON.stringify(value)).toEqual([503, "RUNNER_NOT_SPECIALIZED"]);
      // Not held: a wait would be at least the value's milliseconds, and none of these name one.
      expect(performance.now() - started, JSON.stringify(value)).toBeLessThan(2000);
    }
    expect((await specialize(r, spec(kind))).status).toBe(200);
    expect((await send(r, "GET", "/invoke")).body).toBe("hello");
  });

  it("specialize → 200 {function, loadMs}; readyz 200 ready; invoke runs the handler", async () => {
    const r = await start(kind);
    const res = await specialize(r, spec(kind, { name: "hello" }));
    const body = JSON.parse(res.body) as { function: string; loadMs: number };
    expect([res.status, body.function, typeof body.loadMs]).toEqual([200, "hello", "number"]);
    const ready = await send(r, "GET", "/readyz");
    expect([ready.status, JSON.parse(ready.body)]).toEqual([200, { status: "ready", function: "hello" }]);
    const invoke = await send(r, "GET", "/invoke/sub?x=1");
    expect([invoke.status, invoke.body]).toEqual([200, "hello"]);
  });

  it("specialize again: the same spec → 200 (idempotent), another → 409 CONFLICT", async () => {
    const r = await start(kind);
    expect((await specialize(r, spec(kind))).status).toBe(200);
    expect((await specialize(r, spec(kind))).status).toBe(200);
    const other = await specialize(r, spec(kind, { name: "other" }));
    expect([other.status, other.error.code]).toEqual([409, "CONFLICT"]);
    expect((await send(r, "GET", "/invoke")).body).toBe("hello");
  });

  it.each(INVALID_SPECS)("bad load spec ($name) → 400 INVALID_SPEC naming the field; still generic", async (c) => {
    const r = await start(kind);
    const res = await specialize(r, c.body(kind));
    expect([res.status, res.error.code], res.body).toEqual([400, "INVALID_SPEC"]);
    if (c.field !== undefined) expect(res.error.message.startsWith(c.field), res.error.message).toBe(true);
    expect(JSON.parse((await send(r, "GET", "/readyz")).body)).toEqual({ status: "generic" });
  });

  it.each([
    ["a syntax error", "syntaxError"],
    ["no handler", "noHandler"],
  ] as const)(
    "code with %s → 400 FUNCTION_LOAD_FAILED naming the function; the runner stays usable",
    async (_, which) => {
      const r = await start(kind);
      const res = await specialize(r, spec(kind, { name: "broken", code: kind.code[which] }));
      expect([res.status, res.error.code, res.error.function]).toEqual([400, "FUNCTION_LOAD_FAILED", "broken"]);
      expect(JSON.parse((await send(r, "GET", "/readyz")).body)).toEqual({ status: "generic" });
      expect((await specialize(r, spec(kind))).status).toBe(200);
      expect((await send(r, "GET", "/invoke")).body).toBe("hello");
    },
  );

  it("code that never finishes loading → readyz 503 loading, then 400 FUNCTION_LOAD_FAILED with loadTimeoutMs at FAAS_LOAD_TIMEOUT_MS, then exit 3", async () => {
    const r = await start(kind, { FAAS_LOAD_TIMEOUT_MS: "700" });
    const started = performance.now();
    const pending = specialize(r, spec(kind, { name: "spin", code: kind.code.spins }));
    await new Promise((resolve) => setTimeout(resolve, 300));
    const ready = await send(r, "GET", "/readyz");
    expect([ready.status, JSON.parse(ready.body)]).toEqual([503, { status: "loading" }]);
    const res = await pending;
    expect(performance.now() - started).toBeGreaterThanOrEqual(650);
    expect([res.status, res.error.code, res.error.function, res.error.loadTimeoutMs]).toEqual([
      400,
      "FUNCTION_LOAD_FAILED",
      "spin",
      700,
    ]);
    expect(res.error.message).toContain("did not finish loading within 700 ms");
    expect(await r.exited).toBe(3);
  });

  it("error codes: throw → 500 HANDLER_ERROR, past timeoutSeconds → 504 HANDLER_TIMEOUT, 404 NOT_FOUND, 405 METHOD_NOT_ALLOWED", async () => {
    const thrower = await start(kind);
    await specialize(thrower, spec(kind, { name: "thrower", code: kind.code.throws }));
    const threw = await send(thrower, "GET", "/invoke");
    expect([threw.status, threw.error.code, threw.error.function]).toEqual([500, "HANDLER_ERROR", "thrower"]);
    expect(threw.error.message).toContain("kaboom");
    expect((await send(thrower, "GET", "/nowhere")).error.code).toBe("NOT_FOUND");
    const wrong = await send(thrower, "GET", "/specialize");
    expect([wrong.status, wrong.error.code]).toEqual([405, "METHOD_NOT_ALLOWED"]);

    const slow = await start(kind);
    await specialize(slow, spec(kind, { name: "slow", code: kind.code.slow, timeoutSeconds: 0.2 }));
    const late = await send(slow, "GET", "/invoke");
    expect([late.status, late.error.code]).toEqual([504, "HANDLER_TIMEOUT"]);
    for (const res of [threw, wrong, late])
      expect(res.status).toBe(ERROR_STATUS[res.error.code as keyof typeof ERROR_STATUS]);
  });

  it("draining on SIGTERM: the in-flight call finishes marked draining, then exit 0", async () => {
    const r = await start(kind);
    await specialize(r, spec(kind, { code: kind.code.slow }));
    const inFlight = send(r, "GET", "/invoke");
    await new Promise((resolve) => setTimeout(resolve, 200));
    r.proc.kill("SIGTERM");
    const res = await inFlight;
    expect([res.status, res.body, res.headers["x-faas-runner-state"]]).toEqual([200, "finished", "draining"]);
    expect(await r.exited).toBe(0);
  });

  it("a code directory that cannot be loaded: the runner logs why and exits 1", async () => {
    for (const [what, files] of [
      ["function.json is not JSON", { "function.json": "{nope" }],
      [
        "its code does not load",
        { "function.json": JSON.stringify(spec(kind, { code: undefined })), [kind.moduleFile]: kind.code.syntaxError },
      ],
    ] as const) {
      const dir = await mkdtemp(join(tmpdir(), "faas-contract-"));
      cleanups.push(() => rm(dir, { recursive: true, force: true }));
      for (const [file, text] of Object.entries(files)) await writeFile(join(dir, file), text);
      const { exited, stderr } = runCodeDir(kind, dir);
      const code = await exited;
      expect(code, what).toBe(1);
      expect(stderr(), what).toMatch(/code.dir.load.failed/);
    }
  });

  it("a runner started with its code directory serves it, and nothing calls the handler before the first request", async () => {
    const dir = await mkdtemp(join(tmpdir(), "faas-contract-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, "function.json"), JSON.stringify(spec(kind, { name: "counted", code: undefined })));
    await writeFile(join(dir, kind.moduleFile), kind.code.counter);
    const r = await start(kind, { FAAS_CODE_DIR: dir });
    // The import may still run when the runner says it listens (readyz: loading).
    let ready = await send(r, "GET", "/readyz");
    for (let i = 0; i < 100 && ready.status !== 200; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      ready = await send(r, "GET", "/readyz");
    }
    expect([ready.status, JSON.parse(ready.body)]).toEqual([200, { status: "ready", function: "counted" }]);
    expect((await send(r, "GET", "/invoke")).body).toBe("1");
    expect((await send(r, "GET", "/invoke")).body).toBe("2");
  });

  it("a generic runner's warm-up leaves no trace: the first function's handler is called only by requests", async () => {
    const r = await start(kind);
    expect((await specialize(r, spec(kind, { name: "counted", code: kind.code.counter }))).status).toBe(200);
    expect((await send(r, "GET", "/invoke")).body).toBe("1");
  });

  it("a package with dir: the main module imports a sibling and its dependencies (a symlinked dependency directory) and reads a data file beside it", async () => {
    const root = await tempDir();
    const shared = await tempDir();
    await writeFiles(root, kind.pkg.files);
    await writeFiles(shared, kind.pkg.deps);
    // Local mode links the shared dependency build into the package root.
    await symlink(join(shared, kind.pkg.depsDir), join(root, kind.pkg.depsDir));
    const r = await start(kind);
    const res = await specialize(
      r,
      spec(kind, { name: "pkg", code: undefined, package: { digest: DIGEST, dir: root } }),
    );
    expect([res.status, JSON.parse(res.body).function], res.body).toEqual([200, "pkg"]);
    expect((await send(r, "GET", "/invoke")).body).toBe(kind.pkg.answer);
    // Same package → idempotent; a package is never copied.
    expect(
      (await specialize(r, spec(kind, { name: "pkg", code: undefined, package: { digest: DIGEST, dir: root } })))
        .status,
    ).toBe(200);
  });

  it("a package whose dir does not exist → 400 FUNCTION_LOAD_FAILED naming the package; the runner stays usable", async () => {
    const r = await start(kind);
    const res = await specialize(
      r,
      spec(kind, { code: undefined, package: { digest: DIGEST, dir: "/nonexistent/faas-pkg" } }),
    );
    expect([res.status, res.error.code], res.body).toEqual([400, "FUNCTION_LOAD_FAILED"]);
    expect(res.error.message.startsWith(`package ${DIGEST} (/nonexistent/faas-pkg): `), res.error.message).toBe(true);
    expect((await specialize(r, spec(kind))).status).toBe(200);
  });

  it("accepts every load spec at the api's limits (name length, code size, timeout, handler and env names)", async () => {
    const name = "n".repeat(MAX_NAME_LENGTH);
    const fn = makeFunction(name, {
      runtime: kind.runtime,
      handler: "_m1._handle",
      code: kind.code.pad(kind.code.hello.replace("handle", "_handle"), MAX_CODE_BYTES),
      timeoutSeconds: 900,
      env: { _A1: "", Z: "é" },
    });
    expect(Buffer.byteLength(fn.spec.code ?? "")).toBe(MAX_CODE_BYTES);
    const r = await start(kind);
    const res = await specialize(r, toLoadSpec(fn));
    expect([res.status, JSON.parse(res.body).function], res.body).toEqual([200, name]);
    expect((await send(r, "GET", "/invoke")).body).toBe("hello");
  });
});

interface ProxyBehaviour {
  /** Hold every answer back this long. */
  delayMs?: number;
  /** Add a byte to the manifest's bytes. */
  tamperManifest?: boolean;
  /** Change each blob: its last byte flipped (same length), or one byte added. */
  tamperBlob?: "flip" | "longer";
  /** Send each blob but its last 9 bytes, then hold those back this long. */
  holdBlobTailMs?: number;
  /** Answer every manifest request with these bytes (read at each request, so it can change). */
  manifestBody?: Buffer;
}

/**
 * A loopback HTTP proxy in front of the registry that can hold answers back
 * or change a manifest's or a blob's bytes: what a slow or lying registry
 * looks like. `held` resolves once a blob's tail is being held back.
 */
async function startProxy(
  target: string,
  behave: ProxyBehaviour,
  port = 0,
): Promise<{ url: string; held: Promise<void>; close(): void }> {
  let markHeld = (): void => {};
  const held = new Promise<void>((resolve) => (markHeld = resolve));
  const server = createServer((req, res) => {
    void (async () => {
      if (behave.delayMs) await new Promise((resolve) => setTimeout(resolve, behave.delayMs));
      const up = await fetch(`${target}${req.url}`, { headers: { accept: req.headers.accept ?? "*/*" } });
      let body = Buffer.from(await up.arrayBuffer());
      if (behave.tamperManifest && req.url?.includes("/manifests/")) body = Buffer.concat([body, Buffer.from("\n")]);
      if (behave.manifestBody !== undefined && req.url?.includes("/manifests/")) {
        res.writeHead(200, { "content-type": "application/vnd.oci.image.manifest.v1+json" });
        res.end(behave.manifestBody);
        return;
      }
      const blob = up.ok && req.url?.includes("/blobs/");
      if (blob && behave.tamperBlob === "flip")
        body.writeUInt8(body.readUInt8(body.length - 1) ^ 0xff, body.length - 1);
      if (blob && behave.tamperBlob === "longer") body = Buffer.concat([body, Buffer.from([0])]);
      res.writeHead(up.status, { "content-type": up.headers.get("content-type") ?? "application/octet-stream" });
      if (blob && behave.holdBlobTailMs && body.length > 9) {
        res.write(body.subarray(0, body.length - 9));
        markHeld();
        await new Promise((resolve) => setTimeout(resolve, behave.holdBlobTailMs));
        body = body.subarray(body.length - 9);
      }
      res.end(body);
    })().catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  const bound = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${bound}`,
    held,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Every path under `dir`, relative to it. */
async function tree(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).map(String).sort();
}

const registrySkip = registrySkipReason();

describe.skipIf(registrySkip !== undefined).each(KINDS)(
  "runner packages pulled from an OCI registry: $runtime",
  (kind) => {
    let registry: Registry;
    let good: string;
    const repository = `test/${kind.runtime}`;
    const config = { runtime: kind.runtime, handler: "main.handle", dependencies: null };

    beforeAll(async () => {
      registry = await startRegistry();
      good = await pushPackage(registry.url, repository, [{ files: kind.pkg.files }, { files: kind.pkg.deps }], config);
    });
    afterAll(async () => {
      await registry?.stop();
    });

    const pulled = (digest: string, where: { registry?: string; repository?: string } = {}) =>
      spec(kind, {
        name: "pulled",
        code: undefined,
        package: { digest, registry: where.registry ?? registry.url, repository: where.repository ?? repository },
      });

    /** A runner with a TMPDIR of its own, where it unpacks packages. */
    async function startWithTmp(env: Record<string, string> = {}): Promise<{ r: Runner; tmp: string }> {
      const tmp = await tempDir("faas-pull-");
      return { r: await start(kind, { TMPDIR: tmp, ...env }), tmp };
    }

    it("a package → 200; the handler imports its sibling module and its dependencies from the deps layer", async () => {
      const { r, tmp } = await startWithTmp();
      const res = await specialize(r, pulled(good));
      expect([res.status, JSON.parse(res.body).function], res.body).toEqual([200, "pulled"]);
      expect((await send(r, "GET", "/invoke")).body).toBe(kind.pkg.answer);
      // Unpacked under $TMPDIR/faas-packages/<hex>, nothing else left there.
      expect(await readdir(join(tmp, "faas-packages"))).toEqual([good.slice("sha256:".length)]);
    });

    it("healthz and readyz (loading) answer while a pull is under way", async () => {
      const slow = await startProxy(registry.url, { delayMs: 700 });
      cleanups.push(async () => slow.close());
      const { r } = await startWithTmp();
      const pending = specialize(r, pulled(good, { registry: slow.url }));
      await new Promise((resolve) => setTimeout(resolve, 300));
      const started = performance.now();
      expect((await send(r, "GET", "/healthz")).status).toBe(200);
      const ready = await send(r, "GET", "/readyz");
      expect([ready.status, JSON.parse(ready.body)]).toEqual([503, { status: "loading" }]);
      expect(performance.now() - started).toBeLessThan(300);
      expect((await pending).status).toBe(200);
      expect((await send(r, "GET", "/invoke")).body).toBe(kind.pkg.answer);
    });

    it("an unknown digest → 400 FUNCTION_LOAD_FAILED naming the package and the registry's 404; the runner stays usable", async () => {
      const { r } = await startWithTmp();
      const missing = `sha256:${"0".repeat(64)}`;
      const res = await specialize(r, pulled(missing));
      expect([res.status, res.error.code, res.error.function], res.body).toEqual([
        400,
        "FUNCTION_LOAD_FAILED",
        "pulled",
      ]);
      expect(
        res.error.message.startsWith(`package ${missing} (${registry.url}/${repository}): `),
        res.error.message,
      ).toBe(true);
      expect(res.error.message).toMatch(/HTTP 404 MANIFEST_UNKNOWN/);
      expect(JSON.parse((await send(r, "GET", "/readyz")).body)).toEqual({ status: "generic" });
      expect((await specialize(r, pulled(good))).status).toBe(200);
      expect((await send(r, "GET", "/invoke")).body).toBe(kind.pkg.answer);
    });

    it("malformed manifests with the digest asked for (random bytes, JSON, near-manifests) → 400 every time; the runner stays usable", async () => {
      const behave: ProxyBehaviour = {};
      const proxy = await startProxy(registry.url, behave);
      cleanups.push(async () => proxy.close());
      const { r } = await startWithTmp();
      const hex = fc.stringMatching(/^[a-f0-9]{64}$/).map((h) => `sha256:${h}`);
      const descriptor = fc.record(
        {
          mediaType: fc.oneof(fc.constant(LAYER_MEDIA_TYPE), fc.constant(PACKAGE_CONFIG_MEDIA_TYPE), fc.string()),
          digest: fc.oneof(hex, fc.string(), fc.jsonValue()),
          size: fc.oneof(fc.nat(), fc.integer(), fc.double(), fc.string(), fc.constant(2 ** 60)),
        },
        { requiredKeys: [] },
      );
      const body = fc.oneof(
        fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
        fc.jsonValue().map((v) => Buffer.from(JSON.stringify(v) ?? "null")),
        fc
          .record(
            {
              schemaVersion: fc.oneof(fc.constant(2), fc.jsonValue()),
              mediaType: fc.oneof(fc.constant(MANIFEST_MEDIA_TYPE), fc.string()),
              config: fc.oneof(descriptor, fc.jsonValue()),
              layers: fc.oneof(fc.array(descriptor, { maxLength: 3 }), fc.jsonValue()),
            },
            { requiredKeys: [] },
          )
          .map((m) => Buffer.from(JSON.stringify(m))),
      );
      await fc.assert(
        fc.asyncProperty(body, async (bytes) => {
          behave.manifestBody = bytes;
          const res = await specialize(r, pulled(sha256(bytes), { registry: proxy.url }));
          expect([res.status, res.error?.code], res.body).toEqual([400, "FUNCTION_LOAD_FAILED"]);
          expect(res.error.message).toMatch(/^package sha256:[a-f0-9]{64} \(/);
          expect(JSON.parse((await send(r, "GET", "/readyz")).body)).toEqual({ status: "generic" });
        }),
        { numRuns: 60, seed: 11 },
      );
      // After all that, the same runner still loads a real package.
      expect((await specialize(r, pulled(good))).status).toBe(200);
      expect((await send(r, "GET", "/invoke")).body).toBe(kind.pkg.answer);
    });

    it("a manifest whose bytes do not have the requested digest → 400 digest mismatch", async () => {
      const lying = await startProxy(registry.url, { tamperManifest: true });
      cleanups.push(async () => lying.close());
      const { r, tmp } = await startWithTmp();
      const res = await specialize(r, pulled(good, { registry: lying.url }));
      expect([res.status, res.error.code], res.body).toEqual([400, "FUNCTION_LOAD_FAILED"]);
      expect(res.error.message).toMatch(
        /^package sha256:[a-f0-9]{64} \(http:\/\/127\.0\.0\.1:\d+\/test\/\w+\): digest mismatch/,
      );
      expect(await tree(tmp).then((t) => t.filter((p) => p.startsWith("faas-packages/")))).toEqual([]);
    });

    it.each([
      ["a ../evil entry", { name: "../evil", body: "gotcha" }, /unsafe entry "\.\.\/evil"/],
      [
        "an absolute path",
        { name: "/tmp/faas-evil-abs", body: "gotcha" },
        /unsafe entry "\/tmp\/faas-evil-abs": an absolute path/,
      ],
      ["a symbolic link out of the root", { name: "escape", type: "symlink", linkname: "../../etc" }, /symbolic link/],
      ["a hard link out of the root", { name: "hard", type: "hardlink", linkname: "../outside" }, /hard link/],
      ["a FIFO", { name: "pipe", type: "fifo" }, /unsafe entry "pipe"/],
      [
        "a hard link through a symbolic link",
        [
          { name: "d", type: "symlink", linkname: "data" },
          { name: "hard", type: "hardlink", linkname: "d/word.txt" },
        ],
        /unsafe entry "hard": a hard link through the symbolic link "d\/word\.txt"/,
      ],
      [
        "a hard link to a symbolic link (that would leave the root from where the link is)",
        [
          { name: "a/s", type: "symlink", linkname: "../data" },
          { name: "t", type: "hardlink", linkname: "a/s" },
        ],
        /unsafe entry "t": a hard link through the symbolic link "a\/s"/,
      ],
    ] as const)("a layer with %s → 400 unsafe entry, nothing written outside the root", async (_, entry, message) => {
      const entries = (Array.isArray(entry) ? entry : [entry]) as TarEntry[];
      const digest = await pushPackage(
        registry.url,
        repository,
        [{ files: kind.pkg.files, entries }, { files: kind.pkg.deps }],
        config,
      );
      const { r, tmp } = await startWithTmp();
      const res = await specialize(r, pulled(digest));
      expect([res.status, res.error.code], res.body).toEqual([400, "FUNCTION_LOAD_FAILED"]);
      expect(res.error.message).toMatch(message);
      // The temporary directory is gone and nothing landed beside it (or anywhere in TMPDIR).
      const left = await tree(tmp);
      expect(left.filter((p) => p.startsWith("faas-packages/") || p.includes("evil"))).toEqual([]);
      expect(existsSync("/tmp/faas-evil-abs")).toBe(false);
      expect(JSON.parse((await send(r, "GET", "/readyz")).body)).toEqual({ status: "generic" });
    });

    it.each([
      ["its last byte flipped", "flip", /: digest mismatch: layer sha256:[a-f0-9]{64} has digest sha256:[a-f0-9]{64}$/],
      ["one byte more", "longer", /: layer sha256:[a-f0-9]{64} is longer than the manifest's size \d+$/],
    ] as const)(
      "a layer blob with %s → 400 naming the mismatch; nothing of it unpacked, nothing left behind",
      async (_, tamper, message) => {
        // Past any read buffer (the Python runner reads 256 KiB at a time); the package's own files come first.
        const digest = await pushPackage(
          registry.url,
          repository,
          [{ files: { ...kind.pkg.files, "zz-noise.bin": randomBytes(320 * 1024) } }, { files: kind.pkg.deps }],
          config,
        );
        const lying = await startProxy(registry.url, { tamperBlob: tamper, holdBlobTailMs: 500 });
        cleanups.push(async () => lying.close());
        const { r, tmp } = await startWithTmp();
        const pending = specialize(r, pulled(digest, { registry: lying.url }));
        pending.catch(() => undefined); // the runner is killed at the end if an expectation fails first
        await lying.held;
        await new Promise((resolve) => setTimeout(resolve, 250));
        // All of the first layer but its tail has arrived: the pull is under way, and none of its files is unpacked.
        const during = await tree(join(tmp, "faas-packages"));
        expect(during.length, "the pull's temporary directory").toBeGreaterThan(0);
        const names = Object.keys(kind.pkg.files).flatMap((path) => path.split("/"));
        expect(during.filter((path) => names.some((name) => path.split("/").includes(name)))).toEqual([]);
        const res = await pending;
        expect([res.status, res.error.code], res.body).toEqual([400, "FUNCTION_LOAD_FAILED"]);
        expect(
          res.error.message.startsWith(`package ${digest} (${lying.url}/${repository}): `),
          res.error.message,
        ).toBe(true);
        expect(res.error.message).toMatch(message);
        // No <hex>, no temporary directory, no spool file.
        expect(await tree(join(tmp, "faas-packages"))).toEqual([]);
        expect(JSON.parse((await send(r, "GET", "/readyz")).body)).toEqual({ status: "generic" });
      },
    );

    it("a package with more entries than FAAS_PACKAGE_MAX_ENTRIES (directories and empty files count) → 400 naming the limit", async () => {
      const entries: TarEntry[] = [];
      for (let i = 0; i < 25; i++) entries.push({ name: `d${i}/`, type: "dir" }, { name: `d${i}/empty`, body: "" });
      const digest = await pushPackage(registry.url, repository, [{ files: kind.pkg.files, entries }], config);
      const { r, tmp } = await startWithTmp({ FAAS_PACKAGE_MAX_ENTRIES: "20" });
      const res = await specialize(r, pulled(digest));
      expect([res.status, res.error.code], res.body).toEqual([400, "FUNCTION_LOAD_FAILED"]);
      expect(res.error.message).toMatch(
        /: too many entries: the package has more than 20 \(FAAS_PACKAGE_MAX_ENTRIES\)$/,
      );
      expect(await tree(join(tmp, "faas-packages"))).toEqual([]);
      // A package within the limit loads.
      expect((await specialize(r, pulled(good))).status).toBe(200);
    });

    it("a pax header past 64 KiB → 400 naming its size and the limit", async () => {
      const record = ` comment=${"x".repeat(70 * 1024)}\n`;
      const body = `${record.length + 5}${record}`;
      expect(Buffer.byteLength(body)).toBe(record.length + 5);
      const digest = await pushPackage(
        registry.url,
        repository,
        [{ files: kind.pkg.files, entries: [{ name: "PaxHeader/after", type: "pax", body }, { name: "after" }] }],
        config,
      );
      const { r } = await startWithTmp();
      const res = await specialize(r, pulled(digest));
      expect([res.status, res.error.code], res.body).toEqual([400, "FUNCTION_LOAD_FAILED"]);
      expect(res.error.message).toMatch(/bad layer sha256:[a-f0-9]{64}: a .* header of \d+ bytes \(limit 65536\)$/);
    });

    it("FAAS_PACKAGE_CACHE_DIR: packages are unpacked there, in a directory it creates 0700", async () => {
      const base = await tempDir("faas-cache-");
      const cache = join(base, "made", "cache");
      const { r } = await startWithTmp({ FAAS_PACKAGE_CACHE_DIR: cache });
      const res = await specialize(r, pulled(good));
      expect(res.status, res.body).toBe(200);
      expect(await readdir(cache)).toEqual([good.slice("sha256:".length)]);
      expect((await stat(cache)).mode & 0o777).toBe(0o700);
    });

    it.each([
      [
        "a symbolic link",
        async (base: string) => {
          await mkdir(join(base, "real"), { mode: 0o700 });
          await symlink(join(base, "real"), join(base, "cache"));
        },
        "is a symbolic link",
      ],
      [
        "group-writable",
        async (base: string) => {
          await mkdir(join(base, "cache"));
          await chmod(join(base, "cache"), 0o770);
        },
        "is writable by its group or others (mode 770)",
      ],
      [
        "world-writable",
        async (base: string) => {
          await mkdir(join(base, "cache"));
          await chmod(join(base, "cache"), 0o707);
        },
        "is writable by its group or others (mode 707)",
      ],
    ] as const)("a package cache directory that is %s → 400 naming it; nothing unpacked", async (_, make, why) => {
      const base = await tempDir("faas-cache-");
      await make(base);
      const cache = join(base, "cache");
      const { r } = await startWithTmp({ FAAS_PACKAGE_CACHE_DIR: cache });
      const res = await specialize(r, pulled(good));
      expect([res.status, res.error.code], res.body).toEqual([400, "FUNCTION_LOAD_FAILED"]);
      expect(res.error.message).toContain(`: the package cache directory ${cache} ${why}: refusing to use it`);
      expect(await readdir(join(base, "cache"))).toEqual([]);
    });

    it("an existing <hex> entry that is a symbolic link is not used → 400 naming it", async () => {
      const base = await tempDir("faas-cache-");
      const cache = join(base, "cache");
      await mkdir(cache, { mode: 0o700 });
      await writeFiles(join(base, "planted"), { [kind.moduleFile]: kind.code.hello });
      const entry = join(cache, good.slice("sha256:".length));
      await symlink(join(base, "planted"), entry);
      const { r } = await startWithTmp({ FAAS_PACKAGE_CACHE_DIR: cache });
      const res = await specialize(r, pulled(good));
      expect([res.status, res.error.code], res.body).toEqual([400, "FUNCTION_LOAD_FAILED"]);
      expect(res.error.message).toContain(`: ${entry} exists and is not a directory owned by uid`);
    });

    it("a symbolic link chain that leaves the root only when followed → 400", async () => {
      // Each link stays inside on its own: a/b/up → ../.. (the root), a/b/out → up/../x (the root's parent).
      const digest = await pushPackage(
        registry.url,
        repository,
        [
          {
            files: kind.pkg.files,
            entries: [
              { name: "a/b/up", type: "symlink", linkname: "../.." },
              { name: "a/b/out", type: "symlink", linkname: "up/../x" },
            ],
          },
        ],
        config,
      );
      const { r } = await startWithTmp();
      const res = await specialize(r, pulled(digest));
      expect([res.status, res.error.code], res.body).toEqual([400, "FUNCTION_LOAD_FAILED"]);
      expect(res.error.message).toMatch(/symbolic link leading outside the package/);
    });

    it("a package that unpacks past FAAS_PACKAGE_MAX_BYTES → 400 too large", async () => {
      const digest = await pushPackage(
        registry.url,
        repository,
        [{ files: { ...kind.pkg.files, "big.bin": Buffer.alloc(64 * 1024) } }],
        config,
      );
      const { r } = await startWithTmp({ FAAS_PACKAGE_MAX_BYTES: String(32 * 1024) });
      const res = await specialize(r, pulled(digest));
      expect([res.status, res.error.code], res.body).toEqual([400, "FUNCTION_LOAD_FAILED"]);
      expect(res.error.message).toMatch(/too large/);
    });

    it("a registry that refuses connections for a moment (a new pod its NetworkPolicy has not admitted yet): the pull tries again and succeeds", async () => {
      const { r } = await startWithTmp();
      const port = await closedPort();
      const loading = specialize(r, pulled(good, { registry: `http://127.0.0.1:${port}` }));
      await new Promise((resolve) => setTimeout(resolve, 400));
      const late = await startProxy(registry.url, {}, port);
      try {
        const res = await loading;
        expect(res.status, res.body).toBe(200);
      } finally {
        late.close();
      }
    });

    it("an unreachable registry → 400 at once, naming it", async () => {
      const { r } = await startWithTmp();
      const nowhere = `http://127.0.0.1:${await closedPort()}`;
      const started = performance.now();
      const res = await specialize(r, pulled(good, { registry: nowhere }));
      expect(performance.now() - started).toBeLessThan(3000);
      expect([res.status, res.error.code], res.body).toEqual([400, "FUNCTION_LOAD_FAILED"]);
      expect(res.error.message.startsWith(`package ${good} (${nowhere}/${repository}): `)).toBe(true);
      expect(res.error.message).toMatch(/cannot reach the registry/);
    });

    it("a pull past FAAS_PACKAGE_PULL_TIMEOUT_MS → 400; the runner stays usable", async () => {
      const slow = await startProxy(registry.url, { delayMs: 1500 });
      cleanups.push(async () => slow.close());
      const { r } = await startWithTmp({ FAAS_PACKAGE_PULL_TIMEOUT_MS: "400" });
      const res = await specialize(r, pulled(good, { registry: slow.url }));
      expect([res.status, res.error.code], res.body).toEqual([400, "FUNCTION_LOAD_FAILED"]);
      expect(res.error.message).toMatch(/did not finish within 400 ms/);
      expect((await specialize(r, pulled(good))).status).toBe(200);
    });

    it("a code directory naming a package: the runner pulls it at start and serves it", async () => {
      const dir = await tempDir();
      await writeFile(join(dir, "function.json"), JSON.stringify(pulled(good)));
      const { r } = await startWithTmp({ FAAS_CODE_DIR: dir });
      let ready = await send(r, "GET", "/readyz");
      for (let i = 0; i < 200 && ready.status !== 200; i++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        ready = await send(r, "GET", "/readyz");
      }
      expect([ready.status, JSON.parse(ready.body)]).toEqual([200, { status: "ready", function: "pulled" }]);
      expect((await send(r, "GET", "/invoke")).body).toBe(kind.pkg.answer);
    });

    it("a code directory naming a missing package: exit 1 with the reason on stderr", async () => {
      const dir = await tempDir();
      const missing = `sha256:${"1".repeat(64)}`;
      await writeFile(join(dir, "function.json"), JSON.stringify(pulled(missing)));
      const tmp = await tempDir("faas-pull-");
      const { exited, stderr } = runCodeDir(kind, dir, { TMPDIR: tmp });
      expect(await exited).toBe(1);
      expect(stderr()).toMatch(/code.dir.load.failed/);
      expect(stderr()).toContain(`package ${missing} (${registry.url}/${repository}): HTTP 404 MANIFEST_UNKNOWN`);
    });
  },
);
