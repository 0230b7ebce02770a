/**
 * The Python runner through its public surface: a real `python3 -m faas_runner`
 * process on port 0, real sockets, real temp directories.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, onTestFinished, test } from "vitest";

const RUNNER_DIR = resolve(import.meta.dirname, "../../packages/runner-python");

interface Runner {
  port: number;
  proc: ChildProcess;
  listening: { event: string; port: number; pid: number; runtime: string };
  exited: Promise<number | null>;
  stderr(): string;
}

async function startRunner(env: Record<string, string> = {}): Promise<Runner> {
  const proc = spawn("python3", ["-m", "faas_runner"], {
    cwd: RUNNER_DIR,
    env: { ...process.env, FAAS_PORT: "0", FAAS_HOST: "127.0.0.1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  onTestFinished(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
  });
  const exited = new Promise<number | null>((done) => proc.on("exit", (code) => done(code)));
  let stdout = "";
  let stderr = "";
  proc.stderr?.on("data", (c: Buffer) => {
    stderr += c.toString();
  });
  const listening = await new Promise<Runner["listening"]>((done, fail) => {
    proc.stdout?.on("data", (c: Buffer) => {
      stdout += c.toString();
      const line = stdout.split("\n").find((l) => l.includes('"listening"'));
      if (line) done(JSON.parse(line));
    });
    void exited.then((code) => fail(new Error(`runner exited with ${code} before listening: ${stderr}`)));
  });
  return { port: listening.port, proc, listening, exited, stderr: () => stderr };
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  // biome-ignore lint/suspicious/noExplicitAny: tests index into parsed bodies freely
  json(): any;
}

function call(
  port: number,
  path: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<Reply> {
  return new Promise((done, fail) => {
    const method = opts.method ?? (opts.body === undefined ? "GET" : "POST");
    const req = request({ host: "127.0.0.1", port, path, method, headers: opts.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", fail);
      res.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8");
        done({ status: res.statusCode ?? 0, headers: res.headers, body, json: () => JSON.parse(body) });
      });
    });
    req.on("error", fail);
    req.end(opts.body);
  });
}

/** Writes raw bytes; resolves with everything received until the server closes. */
function raw(port: number, ...writes: string[]): Promise<string> {
  return new Promise((done, fail) => {
    const socket = connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    socket.setTimeout(5000, () => fail(new Error(`server kept the connection open: ${Buffer.concat(chunks)}`)));
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("error", fail);
    socket.on("close", () => done(Buffer.concat(chunks).toString("latin1")));
    for (const w of writes) socket.write(w);
  });
}

function specialize(port: number, spec: Record<string, unknown>): Promise<Reply> {
  return call(port, "/specialize", { body: JSON.stringify(spec), headers: { "content-type": "application/json" } });
}

async function specialized(code: string, extra: Record<string, unknown> = {}, env: Record<string, string> = {}) {
  const runner = await startRunner(env);
  const res = await specialize(runner.port, { name: "fn", runtime: "python", handler: "main.handle", code, ...extra });
  expect(res.status, res.body).toBe(200);
  return runner;
}

const py = (...lines: string[]) => `${lines.join("\n")}\n`;

describe("life cycle", () => {
  test("a held invocation of a sync handler runs on the loader thread right after the import; later calls on handler threads", async () => {
    const r = await startRunner();
    const held = call(r.port, "/invoke", { headers: { "x-faas-await-load": "fn 10000" } });
    await new Promise((resolve) => setTimeout(resolve, 200));
    // An import that takes a while: the held call is surely registered before it ends (a fast one can end
    // first, and the call then simply runs on a handler thread).
    const code = py(
      "import threading, time",
      "time.sleep(0.3)",
      "def handle(req):",
      "    return threading.current_thread().name",
    );
    expect((await specialize(r.port, { name: "fn", handler: "main.handle", code })).status).toBe(200);
    const first = await held;
    expect([first.status, first.body]).toEqual([200, expect.stringMatching(/^faas-loader/)]);
    expect((await call(r.port, "/invoke")).body).toMatch(/^faas-handler-/);
  });

  test("starts generic, announces its port, becomes ready on specialize", async () => {
    const r = await startRunner();
    expect(r.listening).toEqual({ event: "listening", port: r.port, pid: r.proc.pid, runtime: "python" });
    expect((await call(r.port, "/healthz")).json()).toEqual({ status: "ok" });
    const generic = await call(r.port, "/readyz");
    expect([generic.status, generic.json()]).toEqual([503, { status: "generic" }]);
    const early = await call(r.port, "/invoke");
    expect([early.status, early.json().error.code]).toEqual([503, "RUNNER_NOT_SPECIALIZED"]);

    const res = await specialize(r.port, {
      name: "hello",
      handler: "main.handle",
      code: py("def handle(req):", "    return 'hello from runner'"),
    });
    expect(res.status).toBe(200);
    expect(res.json()).toMatchObject({ function: "hello", loadMs: expect.any(Number) });
    const ready = await call(r.port, "/readyz");
    expect([ready.status, ready.json()]).toEqual([200, { status: "ready", function: "hello" }]);
    const hello = await call(r.port, "/invoke");
    expect([hello.status, hello.body, hello.headers["content-type"]]).toEqual([
      200,
      "hello from runner",
      "text/plain; charset=utf-8",
    ]);
  });

  test("re-specializing with the same code is idempotent; another function gets 409", async () => {
    const spec = { name: "hello", handler: "main.handle", code: py("def handle(req):", "    return 'a'") };
    const r = await startRunner();
    expect((await specialize(r.port, spec)).status).toBe(200);
    expect((await specialize(r.port, spec)).json()).toMatchObject({ function: "hello" });
    const other = await specialize(r.port, { ...spec, name: "other" });
    expect([other.status, other.json().error.code]).toEqual([409, "CONFLICT"]);
    const changed = await specialize(r.port, { ...spec, code: py("def handle(req):", "    return 'b'") });
    expect(changed.status).toBe(409);
    expect((await call(r.port, "/invoke")).body).toBe("a");
  });

  test("code with a syntax error → 400, runner stays generic and can then be specialized", async () => {
    const r = await startRunner();
    const bad = await specialize(r.port, {
      name: "broken",
      handler: "main.handle",
      code: py("def handle(req)", "    return 1"),
    });
    expect(bad.status).toBe(400);
    expect(bad.json().error).toMatchObject({ code: "FUNCTION_LOAD_FAILED", function: "broken" });
    expect(bad.json().error.message).toMatch(/SyntaxError.*line 1/);
    expect((await call(r.port, "/readyz")).json()).toEqual({ status: "generic" });
    const good = await specialize(r.port, {
      name: "fixed",
      handler: "main.handle",
      code: py("def handle(req):", "    return 'ok'"),
    });
    expect(good.status).toBe(200);
    expect((await call(r.port, "/invoke")).body).toBe("ok");
  });

  test("bad load specs → 400 INVALID_SPEC naming the field; missing handler function → 400", async () => {
    const r = await startRunner();
    const code = py("def handle(req):", "    return 'x'");
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ handler: "main.handle", code }, /^name:/],
      [{ name: "f", handler: "nodot", code }, /^handler:/],
      [{ name: "f", runtime: "nodejs", handler: "main.handle", code }, /^runtime:/],
      [{ name: "f", handler: "main.handle", code, timeoutSeconds: -1 }, /^timeoutSeconds:/],
      [{ name: "f", handler: "main.handle", code, env: { A: 1 } }, /^env\.A:/],
      [{ name: "f", handler: "main.handle" }, /^code:/],
    ];
    for (const [spec, message] of cases) {
      const res = await specialize(r.port, spec);
      expect(res.status).toBe(400);
      expect(res.json().error.code).toBe("INVALID_SPEC");
      expect(res.json().error.message).toMatch(message);
    }
    const notJson = await call(r.port, "/specialize", { body: "{nope" });
    expect([notJson.status, notJson.json().error.code]).toEqual([400, "INVALID_SPEC"]);
    const missing = await specialize(r.port, { name: "f", handler: "main.nothere", code });
    expect([missing.status, missing.json().error.code]).toEqual([400, "FUNCTION_LOAD_FAILED"]);
    expect(missing.json().error.message).toContain("nothere");
    expect((await call(r.port, "/readyz")).json()).toEqual({ status: "generic" });
  });

  test("loads from a read-only ConfigMap-style code dir at start, with env and sibling modules", async () => {
    const dir = mkdtempSync(join(tmpdir(), "faas-codedir-"));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    // A ConfigMap volume: real files in a timestamped dir, reached through ..data symlinks.
    mkdirSync(join(dir, "..2024_01_01"));
    const spec = {
      name: "from-dir",
      runtime: "python",
      handler: "app.handle",
      timeoutSeconds: 5,
      env: { GREETING: "hi" },
    };
    writeFileSync(join(dir, "..2024_01_01", "function.json"), JSON.stringify(spec));
    writeFileSync(
      join(dir, "..2024_01_01", "app.py"),
      py("import os, helper", "def handle(req):", "    return helper.greet(os.environ['GREETING'])"),
    );
    writeFileSync(join(dir, "..2024_01_01", "helper.py"), py("def greet(g):", "    return g + ' from dir'"));
    symlinkSync("..2024_01_01", join(dir, "..data"));
    for (const f of ["function.json", "app.py", "helper.py"]) symlinkSync(join("..data", f), join(dir, f));
    const before = readdirSync(dir).sort();

    const r = await startRunner({ FAAS_CODE_DIR: dir });
    const ready = await call(r.port, "/readyz");
    expect([ready.status, ready.json()]).toEqual([200, { status: "ready", function: "from-dir" }]);
    expect((await call(r.port, "/invoke")).body).toBe("hi from dir");
    expect(readdirSync(dir).sort()).toEqual(before); // nothing written into the mount
    // A runner started with its code never specializes (403), whatever is asked.
    const code = py("import os, helper", "def handle(req):", "    return helper.greet(os.environ['GREETING'])");
    expect((await specialize(r.port, { ...spec, name: "other", code })).status).toBe(403);
  });

  test("a code dir that fails to load is fatal at start, with the reason logged", async () => {
    const dir = mkdtempSync(join(tmpdir(), "faas-codedir-"));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, "function.json"), JSON.stringify({ name: "bad", handler: "main.handle" }));
    writeFileSync(join(dir, "main.py"), "def handle(:\n");
    const err = await startRunner({ FAAS_CODE_DIR: dir }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.message).toMatch(/exited with 1.*code_dir_load_failed.*SyntaxError/s);
  });
});

describe("invocation", () => {
  test("passes method, path, query, headers and body to the handler", async () => {
    const r = await specialized(
      py(
        "def handle(req):",
        "    return {'method': req.method, 'path': req.path, 'raw': req.raw_path, 'query': req.query,",
        "            'all': req.query_all, 'h': req.headers.get('X-Custom'), 'has': 'x-custom' in req.headers,",
        "            'ct': req.headers.get('content-type'), 'body': req.text, 'len': len(req.body), 'fn': req.function}",
      ),
    );
    const res = await call(r.port, "/invoke/a/b%20c?x=1&x=2&y=&z=%C3%A9", {
      method: "PUT",
      headers: { "X-Custom": "v1", "content-type": "text/plain" },
      body: "héllo",
    });
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toBe("application/json");
    expect(res.json()).toEqual({
      method: "PUT",
      path: "/a/b c",
      raw: "/a/b%20c",
      query: { x: "1", y: "", z: "é" },
      all: { x: ["1", "2"], y: [""], z: ["é"] },
      h: "v1",
      has: true,
      ct: "text/plain",
      body: "héllo",
      len: 6,
      fn: "fn",
    });
    expect((await call(r.port, "/invoke?q=1")).json()).toMatchObject({
      method: "GET",
      path: "/",
      query: { q: "1" },
      body: "",
      has: false,
    });
  });

  test("maps every return type to a response", async () => {
    const r = await specialized(
      py(
        "from faas import Response",
        "def handle(req):",
        "    return {",
        "        '/str': lambda: 'text',",
        "        '/bytes': lambda: b'\\x00\\x01',",
        "        '/dict': lambda: {'a': 1},",
        "        '/list': lambda: [1, 'two'],",
        "        '/none': lambda: None,",
        "        '/response': lambda: Response('made', status=201, headers={'X-Made': 'yes'}),",
        "        '/response-json': lambda: Response({'ok': True}, status=202, headers=[('Set-Cookie', 'a=1'), ('Set-Cookie', 'b=2')]),",
        "        '/typed': lambda: Response(b'<p/>', headers={'Content-Type': 'text/html'}),",
        "        '/pair': lambda: ('not here', 404),",
        "        '/triple': lambda: ({'e': 1}, 418, {'X-T': 't'}),",
        "        '/bad': lambda: 42,",
        "    }[req.path]()",
      ),
    );
    const get = (p: string) => call(r.port, `/invoke${p}`);
    const cases: [string, number, string | undefined, string][] = [
      ["/str", 200, "text/plain; charset=utf-8", "text"],
      ["/bytes", 200, "application/octet-stream", "\u0000\u0001"],
      ["/dict", 200, "application/json", '{"a":1}'],
      ["/list", 200, "application/json", '[1,"two"]'],
      ["/none", 204, undefined, ""],
      ["/response", 201, "text/plain; charset=utf-8", "made"],
      ["/response-json", 202, "application/json", '{"ok":true}'],
      ["/typed", 200, "text/html", "<p/>"],
      ["/pair", 404, "text/plain; charset=utf-8", "not here"],
      ["/triple", 418, "application/json", '{"e":1}'],
    ];
    for (const [path, status, type, body] of cases) {
      const res = await get(path);
      expect([path, res.status, res.headers["content-type"], res.body]).toEqual([path, status, type, body]);
    }
    expect((await get("/response")).headers["x-made"]).toBe("yes");
    expect((await get("/response-json")).headers["set-cookie"]).toEqual(["a=1", "b=2"]);
    expect((await get("/triple")).headers["x-t"]).toBe("t");
    const bad = await get("/bad");
    expect([bad.status, bad.json().error.code]).toEqual([500, "HANDLER_ERROR"]);
    expect(bad.json().error.message).toMatch(/^TypeError: handler returned int/);
  });

  test("async handlers and handlers without a request argument", async () => {
    const r = await specialized(
      py(
        "import asyncio",
        "async def handle(req):",
        "    await asyncio.sleep(0.01)",
        "    return {'async': req.method}",
      ),
    );
    expect((await call(r.port, "/invoke", { method: "DELETE" })).json()).toEqual({ async: "DELETE" });
    const r2 = await specialized(py("def handle():", "    return 'no args'"));
    expect((await call(r2.port, "/invoke")).body).toBe("no args");
    // Decorated (functools.wraps): the wrapped function's parameters decide, as inspect.signature has it.
    for (const [params, answer] of [
      ["req", "GET"],
      ["", "none"],
    ]) {
      const r3 = await specialized(
        py(
          "import functools",
          "def deco(fn):",
          "    @functools.wraps(fn)",
          "    def wrapper(*args, **kwargs):",
          "        return fn(*args, **kwargs)",
          "    return wrapper",
          "@deco",
          `def handle(${params}):`,
          `    return ${params ? "req.method" : "'none'"}`,
        ),
      );
      expect((await call(r3.port, "/invoke")).body).toBe(answer);
    }
  });

  test("echoes a JSON body; a body that is not JSON → 400 BAD_REQUEST", async () => {
    const r = await specialized(
      py("def handle(req):", "    data = req.json()", "    return {'echo': data, 'n': len(data['items'])}"),
    );
    const payload = { items: [1, 2, 3], nested: { ü: "ß" } };
    const res = await call(r.port, "/invoke", {
      body: JSON.stringify(payload),
      headers: { "content-type": "application/json" },
    });
    expect([res.status, res.json()]).toEqual([200, { echo: payload, n: 3 }]);
    const bad = await call(r.port, "/invoke", { body: "{not json" });
    expect([bad.status, bad.json().error.code]).toEqual([400, "BAD_REQUEST"]);
    expect(bad.json().error.message).toMatch(/not valid JSON/);
  });

  test("a handler that raises → 500 naming the exception, traceback logged, next call fine", async () => {
    const r = await specialized(
      py(
        "def handle(req):",
        "    if req.query.get('fail'):",
        "        raise ValueError('bad input ' + req.query['fail'])",
        "    return 'fine'",
      ),
    );
    const res = await call(r.port, "/invoke?fail=7");
    expect(res.status).toBe(500);
    expect(res.json()).toEqual({
      error: { code: "HANDLER_ERROR", message: "ValueError: bad input 7", function: "fn" },
    });
    expect((await call(r.port, "/invoke")).body).toBe("fine");
    const logged = r
      .stderr()
      .split("\n")
      .filter((l) => l.includes("handler_error"))
      .map((l) => JSON.parse(l));
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ level: "error", function: "fn", error: "ValueError: bad input 7" });
    expect(logged[0].traceback).toMatch(/File ".*main\.py", line 3, in handle/);
    expect(logged[0].traceback).not.toContain("faas_runner");
  });

  test("sync handlers run on threads: a slow one blocks neither the loop nor other calls", async () => {
    const r = await specialized(py("import time", "def handle(req):", "    time.sleep(0.6)", "    return 'slept'"));
    const started = Date.now();
    const order: string[] = [];
    const calls = Array.from({ length: 8 }, () =>
      call(r.port, "/invoke").then((x) => {
        order.push("invoke");
        return x;
      }),
    );
    await sleep(50);
    const health = await call(r.port, "/healthz");
    order.push("healthz");
    expect(health.status).toBe(200);
    const replies = await Promise.all(calls);
    expect(order[0]).toBe("healthz"); // answered while every handler was still sleeping
    expect(replies.map((x) => x.body)).toEqual(Array(8).fill("slept"));
    expect(Date.now() - started).toBeLessThan(8 * 600 * 0.5); // in parallel, not one after another
  });
});

describe("timeouts", () => {
  test("a hung sync handler → 504 + draining; others finish; new calls refused; exit 3", async () => {
    const release = join(mkdtempSync(join(tmpdir(), "faas-release-")), "go");
    onTestFinished(() => rmSync(release, { force: true }));
    const r = await specialized(
      py(
        "import os, time",
        "def handle(req):",
        "    if req.path == '/hang':",
        "        while True: time.sleep(1)",
        "    while not os.path.exists(req.query['file']):",
        "        time.sleep(0.02)",
        "    return 'finished after drain'",
      ),
      { timeoutSeconds: 3 },
    );
    const hang = call(r.port, "/invoke/hang");
    await sleep(1500);
    const inFlight = call(r.port, `/invoke/wait?file=${encodeURIComponent(release)}`);
    const timedOut = await hang;
    expect(timedOut.status).toBe(504);
    expect(timedOut.json().error).toMatchObject({ code: "HANDLER_TIMEOUT", function: "fn" });
    expect(timedOut.headers["x-faas-runner-state"]).toBe("draining");

    const ready = await call(r.port, "/readyz");
    expect([ready.status, ready.json()]).toEqual([503, { status: "draining" }]);
    const refused = await call(r.port, "/invoke");
    expect([refused.status, refused.json().error.code]).toEqual([503, "RUNNER_DRAINING"]);
    expect(refused.headers["x-faas-runner-state"]).toBe("draining");
    expect(r.proc.exitCode).toBeNull(); // still waiting for the in-flight call

    writeFileSync(release, "");
    const finished = await inFlight;
    expect([finished.status, finished.body]).toEqual([200, "finished after drain"]);
    expect(finished.headers["x-faas-runner-state"]).toBe("draining");
    expect(await r.exited).toBe(3);
  });

  test("a hung async handler is cancelled: 504 and the runner keeps serving", async () => {
    const r = await specialized(
      py(
        "import asyncio",
        "async def handle(req):",
        "    if req.path == '/hang':",
        "        await asyncio.sleep(3600)",
        "    return 'alive'",
      ),
      { timeoutSeconds: 1 },
    );
    const res = await call(r.port, "/invoke/hang");
    expect([res.status, res.json().error.code]).toEqual([504, "HANDLER_TIMEOUT"]);
    expect(res.headers["x-faas-runner-state"]).toBeUndefined();
    expect((await call(r.port, "/invoke")).body).toBe("alive");
    expect((await call(r.port, "/readyz")).status).toBe(200);
    expect(r.proc.exitCode).toBeNull();
  });

  test("a handler raising its own TimeoutError is a handler error, not a timeout", async () => {
    const r = await specialized(py("def handle(req):", "    raise TimeoutError('upstream slow')"), {
      timeoutSeconds: 5,
    });
    const res = await call(r.port, "/invoke");
    expect([res.status, res.json().error.message]).toEqual([500, "TimeoutError: upstream slow"]);
    expect((await call(r.port, "/readyz")).status).toBe(200);
  });
});

describe("HTTP/1.1", () => {
  test("malformed requests → 400 and close; the runner keeps serving", async () => {
    const bad = [
      "NOT A REQUEST\r\n\r\n",
      "GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
      "GET /healthz HTTP/1.1\r\n\r\n", // HTTP/1.1 without Host
      "GET /healthz HTTP/1.1\r\nHost: x\r\n folded: header\r\n\r\n",
      "POST /invoke HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "POST /invoke HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
      "POST /invoke HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ];
    const r = await specialized(py("def handle(req):", "    return 'ok'"));
    for (const req of bad) {
      const reply = await raw(r.port, req);
      expect(reply, JSON.stringify(req)).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
      expect(reply).toContain("connection: close");
      expect(reply).toContain('"code":"BAD_REQUEST"');
    }
    expect((await raw(r.port, "GET / HTTP/2.0\r\n\r\n")).startsWith("HTTP/1.1 505")).toBe(true);
    expect((await call(r.port, "/invoke")).body).toBe("ok");
  });

  test("oversized or too many headers → 431 and close", async () => {
    const r = await startRunner();
    const huge = await raw(r.port, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(70_000)}\r\n\r\n`);
    expect(huge).toMatch(/^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
    const many = Array.from({ length: 150 }, (_, i) => `X-H${i}: v\r\n`).join("");
    expect(await raw(r.port, `GET /healthz HTTP/1.1\r\nHost: x\r\n${many}\r\n`)).toMatch(/^HTTP\/1\.1 431 /);
    expect((await call(r.port, "/healthz")).status).toBe(200);
  });

  test("chunked bodies (with extensions and trailers), pipelining and Connection: close", async () => {
    const r = await specialized(py("def handle(req):", "    return req.body.upper()"));
    const chunked =
      "POST /invoke HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
      "5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n";
    const second = "GET /invoke HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    const reply = await raw(r.port, chunked + second); // both in one write: pipelined
    const responses = reply.split(/(?=HTTP\/1\.1 )/);
    expect(responses).toHaveLength(2);
    expect(responses[0]).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(responses[0]).toMatch(/content-length: 12\r\n\r\nHELLO, WORLD$/);
    expect(responses[1]).toMatch(/connection: close\r\n\r\nOK$/);
  });

  test("Expect: 100-continue gets an interim response before the body is sent", async () => {
    const r = await specialized(py("def handle(req):", "    return req.text[::-1]"));
    const reply = await new Promise<string>((done, fail) => {
      const socket = connect(r.port, "127.0.0.1");
      let got = "";
      socket.on("error", fail);
      socket.on("data", (c: Buffer) => {
        got += c.toString();
        if (got === "HTTP/1.1 100 Continue\r\n\r\n") socket.write("abc");
      });
      socket.on("close", () => done(got));
      socket.write(
        "POST /invoke HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\nConnection: close\r\n\r\n",
      );
    });
    expect(reply).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\ncba$/);
  });

  test("HTTP/1.0 closes by default and keeps alive on request; idle keep-alive connections time out", async () => {
    const r = await specialized(py("def handle(req):", "    return 'x'"), {}, { FAAS_KEEPALIVE_SECONDS: "1" });
    const once = await raw(r.port, "GET /invoke HTTP/1.0\r\n\r\n");
    expect(once).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*connection: close\r\n\r\nx$/);
    const started = Date.now();
    // Kept alive (HTTP/1.0 keep-alive, then HTTP/1.1), then closed by the server after ~1 s idle.
    const kept = await raw(
      r.port,
      "GET /invoke HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /invoke HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    expect(kept.split("HTTP/1.1 200 OK")).toHaveLength(3);
    expect(kept).toContain("connection: keep-alive");
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(Date.now() - started).toBeLessThan(4000);
  });

  test("routes: 404 unknown path, 405 wrong method, 413 body over the limit", async () => {
    const r = await specialized(py("def handle(req):", "    return 'x'"), {}, { FAAS_MAX_BODY_BYTES: "1000" });
    const missing = await call(r.port, "/nope");
    expect([missing.status, missing.json().error.code]).toEqual([404, "NOT_FOUND"]);
    const wrong = await call(r.port, "/specialize");
    expect([wrong.status, wrong.json().error.code]).toEqual([405, "METHOD_NOT_ALLOWED"]);
    const big = await raw(
      r.port,
      `POST /invoke HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n${"a".repeat(2000)}`,
    );
    expect(big).toMatch(/^HTTP\/1\.1 413 /);
    expect(big).toContain('"code":"BODY_TOO_LARGE"');
  });

  test("a function module named like a stdlib module does not shadow it", async () => {
    const r = await startRunner();
    const res = await specialize(r.port, {
      name: "shadow",
      handler: "json.handle",
      code: py("def handle(req):", "    return {'mine': True}"),
    });
    expect(res.status).toBe(200);
    expect((await call(r.port, "/invoke")).json()).toEqual({ mine: true });
    expect((await call(r.port, "/readyz")).json()).toEqual({ status: "ready", function: "shadow" });
  });
});

describe("shutdown", () => {
  test("SIGTERM stops accepting, finishes the in-flight call, exits 0", async () => {
    const r = await specialized(py("import time", "def handle(req):", "    time.sleep(1.5)", "    return 'done'"));
    let settled = false;
    const inFlight = call(r.port, "/invoke").finally(() => {
      settled = true;
    });
    await sleep(300);
    r.proc.kill("SIGTERM");
    const probe = () =>
      call(r.port, "/healthz").then(
        () => "accepted",
        (e: NodeJS.ErrnoException) => e.code,
      );
    await expect.poll(probe, { timeout: 1000, interval: 50 }).toBe("ECONNREFUSED");
    expect(settled).toBe(false);
    const res = await inFlight;
    expect([res.status, res.body]).toEqual([200, "done"]);
    expect(res.headers["x-faas-runner-state"]).toBe("draining");
    expect(await r.exited).toBe(0);
  });

  test("SIGTERM on an idle runner exits 0 at once", async () => {
    const r = await startRunner();
    const started = Date.now();
    r.proc.kill("SIGTERM");
    expect(await r.exited).toBe(0);
    expect(Date.now() - started).toBeLessThan(1000);
  });
});
