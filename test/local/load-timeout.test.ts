/**
 * Loading has a deadline (issue 7): code that never finishes loading is
 * refused at deploy within the load timeout, with an error naming the
 * function; its runner is killed by the supervisor; the version already
 * deployed keeps serving; and no runner outlives `faas up`.
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Runtime } from "@faas/api";
import { RunnerProcess } from "@faas/local";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { alive, childrenOf, faas, ROOT, startUp } from "../support/cli.js";
import { startTestPlatform, type TestPlatform, waitFor } from "../support/platform.js";

const LOAD_TIMEOUT_MS = 1500;

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

beforeAll(() => {
  execFileSync("npx", ["tsc", "-b", "packages/cli"], { cwd: ROOT, stdio: "inherit" });
});

async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const GOOD: Record<Runtime, string> = {
  python: 'def handle(req):\n    return "v1"\n',
  nodejs: 'export const handle = () => "v1";\n',
};
/** Top-level code that never returns: pure-language loops, and (Python) a C loop that holds the GIL. */
const SPIN: Array<[Runtime, string, string]> = [
  ["python", "a pure-Python loop", "while True:\n    pass\n"],
  ["python", "a C call that never releases the GIL", "x = sum(range(10**15))\n"],
  ["nodejs", "a busy loop", "while (true) {}\nexport const handle = () => 1;\n"],
];

function pidOf(message: string): number {
  const m = /its runner \(pid (\d+)\) was killed/.exec(message);
  if (m === null) throw new Error(`no runner pid in ${JSON.stringify(message)}`);
  return Number(m[1]);
}

describe("local mode: code that never finishes loading", () => {
  let platform: TestPlatform;

  beforeAll(async () => {
    platform = await startTestPlatform({ backend: { loadTimeoutMs: LOAD_TIMEOUT_MS } });
    return () => platform.stop();
  });

  it.each(SPIN)(
    "%s, %s: deploy refused within the load timeout, runner killed, v1 keeps serving",
    async (runtime, _what, code) => {
      const name = `spin-${runtime}-${code.length}`;
      await platform.deploy(name, { runtime, code: GOOD[runtime], minReplicas: 1 });
      const before = await platform.invoke(name);
      expect([before.status, before.body]).toEqual([200, "v1"]);

      const started = performance.now();
      const res = await platform.admin("PUT", `/functions/${name}`, {
        apiVersion: "faas.example.com/v1",
        kind: "Function",
        metadata: { name },
        spec: { runtime, code },
      });
      const elapsedMs = performance.now() - started;
      const err = res.json<{ error: { code: string; message: string; loadTimeoutMs?: number } }>().error;
      expect(res.status).toBe(400);
      expect(err.code).toBe("INVALID_SPEC");
      expect(err.message).toContain(name);
      expect(err.message).toContain(`did not finish loading within ${LOAD_TIMEOUT_MS} ms`);
      expect(err.loadTimeoutMs).toBe(LOAD_TIMEOUT_MS);
      // The runner answers at the timeout; the supervisor's own deadline is one second later.
      expect(elapsedMs).toBeGreaterThanOrEqual(LOAD_TIMEOUT_MS - 50);
      expect(elapsedMs).toBeLessThan(LOAD_TIMEOUT_MS + 3000);
      const pid = pidOf(err.message);
      await waitFor(`runner ${pid} to be gone`, () => !alive(pid) || undefined, 3000);

      const after = await platform.invoke(name);
      expect([after.status, after.body]).toEqual([200, "v1"]);
      const stored = JSON.parse(await readFile(join(platform.dataDir, "functions", `${name}.json`), "utf8"));
      expect(stored.spec.code).toBe(GOOD[runtime]);
    },
  );
});

describe("faas up and faas deploy: code that never finishes loading", () => {
  const spinning = ["python", "nodejs"] as const;

  it.each(spinning)(
    "%s: `faas deploy` exits 2 naming the function; SIGTERM to `faas up` leaves no runner",
    async (runtime) => {
      const dataDir = await tempDir("faas-spin-");
      const up = await startUp(dataDir, ["-f", join(ROOT, "function-hello.yaml")], {
        FAAS_LOAD_TIMEOUT_MS: String(LOAD_TIMEOUT_MS),
      });
      cleanups.push(async () => {
        if (up.proc.exitCode === null && up.proc.signalCode === null) up.proc.kill("SIGKILL");
        await up.exited;
      });
      const file = join(dataDir, runtime === "python" ? "spin.py" : "spin.mjs");
      await writeFile(file, runtime === "python" ? "while True:\n    pass\n" : "while (true) {}\n");
      const started = performance.now();
      const run = await faas(dataDir, ["deploy", "--name", "spinner", "--runtime", runtime, "--code", file]);
      expect(performance.now() - started).toBeLessThan(LOAD_TIMEOUT_MS + 5000);
      expect(run.code, run.stderr).toBe(2);
      expect(run.stderr).toContain("spinner");
      expect(run.stderr).toContain(`did not finish loading within ${LOAD_TIMEOUT_MS} ms`);

      const runners = childrenOf(up.proc.pid as number);
      up.proc.kill("SIGTERM");
      expect(await up.exited).toBe(0);
      expect(runners.length).toBeGreaterThan(0);
      expect(runners.filter(alive)).toEqual([]);
    },
  );

  it.each(spinning)("%s: a runner stuck loading dies when `faas up` is SIGKILLed", async (runtime) => {
    const dataDir = await tempDir("faas-spin-kill-");
    // A load timeout far beyond the test: only the runner's watch on its supervisor can end it.
    const up = await startUp(dataDir, [], { FAAS_LOAD_TIMEOUT_MS: "600000" });
    cleanups.push(async () => {
      if (up.proc.exitCode === null && up.proc.signalCode === null) up.proc.kill("SIGKILL");
      await up.exited;
    });
    const file = join(dataDir, runtime === "python" ? "spin.py" : "spin.mjs");
    // Python: a C loop that holds the GIL, so the runner's own threads cannot run either.
    await writeFile(file, runtime === "python" ? "x = sum(range(10**15))\n" : "while (true) {}\n");
    const deploy = faas(dataDir, ["deploy", "--name", "spinner", "--runtime", runtime, "--code", file]);
    const runners = childrenOf(up.proc.pid as number);
    expect(runners.length).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 1000));
    up.proc.kill("SIGKILL");
    await up.exited;
    await waitFor(
      "every runner of the killed `faas up` to exit",
      () => runners.every((p) => !alive(p)) || undefined,
      5000,
    );
    const run = await deploy;
    expect(run.code).not.toBe(0);
  });
});

describe("a runner start that does not finish within the load timeout", () => {
  it("fails with a clear error and the process is killed", async () => {
    const dir = await tempDir("faas-start-");
    const pidFile = join(dir, "pid");
    // Never prints its listening line.
    const script = `require("node:fs").writeFileSync(${JSON.stringify(pidFile)}, String(process.pid)); setInterval(() => {}, 1000);`;
    const started = performance.now();
    const attempt = RunnerProcess.spawn(
      "nodejs",
      { command: process.execPath, args: ["-e", script], env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } },
      { loadTimeoutMs: 800 },
    );
    await expect(attempt).rejects.toMatchObject({
      code: "SCALE_UP_FAILED",
      message: expect.stringContaining('nodejs runner did not start: no "listening" line within 800 ms'),
    });
    expect(performance.now() - started).toBeLessThan(3000);
    const pid = Number(await readFile(pidFile, "utf8"));
    await waitFor(`runner ${pid} to be gone`, () => !alive(pid) || undefined, 3000);
  });
});
