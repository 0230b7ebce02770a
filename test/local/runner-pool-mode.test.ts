/**
 * The runners' pool mode and the guards on `/specialize`, the same cases for
 * both runtimes: a bearer token when FAAS_SPECIALIZE_TOKEN is set, 403 for a
 * runner started with its code, and a claimed pool runner whose process
 * restarts (the claim file outlives it) staying unready and unclaimable.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, onTestFinished, test } from "vitest";
import { call } from "../support/http.js";

const ROOT = resolve(import.meta.dirname, "../..");
const TOKEN = "s3cr3t-token-for-tests";

const RUNTIMES = [
  {
    runtime: "python",
    code: "def handle(req):\n    return 'pooled python'\n",
    command: () => ({ cmd: "python3", args: ["-m", "faas_runner"], cwd: join(ROOT, "packages/runner-python") }),
    file: "main.py",
  },
  {
    runtime: "nodejs",
    code: "export function handle() { return 'pooled node'; }\n",
    command: () => ({ cmd: process.execPath, args: [join(ROOT, "packages/runner-node/dist/main.js")], cwd: ROOT }),
    file: "main.mjs",
  },
] as const;

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "faas-pool-mode-"));
  dirs.push(d);
  return d;
}

async function startRunner(runtime: (typeof RUNTIMES)[number], env: Record<string, string>): Promise<string> {
  const { cmd, args, cwd } = runtime.command();
  const proc: ChildProcess = spawn(cmd, args, {
    cwd,
    env: { ...process.env, FAAS_PORT: "0", FAAS_HOST: "127.0.0.1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  onTestFinished(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
  });
  const port = await new Promise<number>((done, fail) => {
    let out = "";
    let err = "";
    proc.stderr?.on("data", (c: Buffer) => {
      err += c.toString();
    });
    proc.stdout?.on("data", (c: Buffer) => {
      out += c.toString();
      const line = out.split("\n").find((l) => l.includes('"listening"'));
      if (line) done((JSON.parse(line) as { port: number }).port);
    });
    proc.on("exit", (code) => fail(new Error(`runner exited with ${code} before listening: ${err}`)));
  });
  return `http://127.0.0.1:${port}`;
}

function loadSpec(runtime: (typeof RUNTIMES)[number], name = "pooled"): string {
  return JSON.stringify({
    name,
    runtime: runtime.runtime,
    handler: "main.handle",
    code: runtime.code,
    timeoutSeconds: 5,
    env: {},
  });
}

describe.each(RUNTIMES)("$runtime runner in pool mode", (runtime) => {
  test("specialize needs the bearer token when one is configured", async () => {
    const url = await startRunner(runtime, { FAAS_SPECIALIZE_TOKEN: TOKEN });
    const none = await call(`${url}/specialize`, { method: "POST", body: loadSpec(runtime) });
    expect(none.status).toBe(401);
    expect(none.json<{ error: { code: string } }>().error.code).toBe("UNAUTHORIZED");
    const wrong = await call(`${url}/specialize`, {
      method: "POST",
      body: loadSpec(runtime),
      headers: { authorization: `Bearer ${TOKEN.slice(0, -1)}x` },
    });
    expect(wrong.status).toBe(401);
    const short = await call(`${url}/specialize`, {
      method: "POST",
      body: loadSpec(runtime),
      headers: { authorization: "Bearer s" },
    });
    expect(short.status).toBe(401);
    // Refused attempts changed nothing: still generic, and the right token works.
    expect((await call(`${url}/invoke`)).status).toBe(503);
    const ok = await call(`${url}/specialize`, {
      method: "POST",
      body: loadSpec(runtime),
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(ok.status).toBe(200);
    const r = await call(`${url}/invoke`);
    expect(r.status).toBe(200);
    expect(r.body).toBe(runtime.runtime === "python" ? "pooled python" : "pooled node");
  });

  test("a runner started with its code refuses to specialize (403)", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, runtime.file), runtime.code);
    writeFileSync(
      join(dir, "function.json"),
      JSON.stringify({ name: "fixed", runtime: runtime.runtime, handler: "main.handle", timeoutSeconds: 5, env: {} }),
    );
    const url = await startRunner(runtime, { FAAS_CODE_DIR: dir });
    // Even the very same function: a Deployment's pod is never re-specialized.
    for (const name of ["fixed", "other"]) {
      const r = await call(`${url}/specialize`, { method: "POST", body: loadSpec(runtime, name) });
      expect(r.status).toBe(403);
      expect(r.json<{ error: { code: string } }>().error.code).toBe("FORBIDDEN");
    }
    expect((await call(`${url}/invoke`)).status).toBe(200);
  });

  test("a generic pool runner is ready; once claimed, a restart keeps it unready and unclaimable", async () => {
    const claimFile = join(tempDir(), "claimed");
    const env = { FAAS_SPECIALIZE_TOKEN: TOKEN, FAAS_POOL_CLAIM_FILE: claimFile };
    const first = await startRunner(runtime, env);
    const idle = await call(`${first}/readyz`);
    expect(idle.status).toBe(200);
    expect(idle.json<{ status: string }>().status).toBe("generic");
    expect(existsSync(claimFile)).toBe(false);
    const ok = await call(`${first}/specialize`, {
      method: "POST",
      body: loadSpec(runtime),
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(ok.status).toBe(200);
    expect(readFileSync(claimFile, "utf8")).toBe("pooled");
    expect((await call(`${first}/readyz`)).json<{ status: string }>().status).toBe("ready");

    // The same container restarting: a new process, the claim file still there.
    const again = await startRunner(runtime, env);
    const ready = await call(`${again}/readyz`);
    expect(ready.status).toBe(503);
    expect(ready.json<{ status: string }>().status).toBe("restarted");
    const refused = await call(`${again}/specialize`, {
      method: "POST",
      body: loadSpec(runtime),
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(refused.status).toBe(409);
    expect((await call(`${again}/invoke`)).status).toBe(503);
  });

  test("without pool mode a generic runner is not ready (503 generic)", async () => {
    const url = await startRunner(runtime, {});
    const r = await call(`${url}/readyz`);
    expect(r.status).toBe(503);
    expect(r.json<{ status: string }>().status).toBe("generic");
  });
});
