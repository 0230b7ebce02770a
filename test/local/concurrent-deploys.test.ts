/**
 * Deploys of one function are serialized (issue 7): after concurrent deploys
 * of different code through the admin API, the code every replica serves is
 * the code stored, and it stays so when replicas are replaced or the platform
 * restarts. The interleaving is forced: each version sleeps at import for a
 * time that shrinks with its index, so later deploys finish their trial load
 * before earlier ones.
 */
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Runtime } from "@faas/api";
import { afterEach, describe, expect, it } from "vitest";
import { startTestPlatform, type TestPlatform, waitFor } from "../support/platform.js";

const VERSIONS = 8;

const stops: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

function versionCode(runtime: Runtime, version: number): string {
  const sleepMs = (VERSIONS - version) * 40;
  if (runtime === "python") {
    return `import os, time\ntime.sleep(${sleepMs / 1000})\ndef handle(req):\n    return f"v${version} {os.getpid()}"\n`;
  }
  return `const until = Date.now() + ${sleepMs};\nwhile (Date.now() < until);\nexport const handle = () => "v${version} " + process.pid;\n`;
}

function manifest(name: string, runtime: Runtime, version: number) {
  return {
    apiVersion: "faas.example.com/v1",
    kind: "Function",
    metadata: { name },
    spec: { runtime, code: versionCode(runtime, version), minReplicas: 2, maxReplicas: 3 },
  };
}

async function storedVersion(p: TestPlatform, name: string): Promise<string> {
  const stored = JSON.parse(await readFile(join(p.dataDir, "functions", `${name}.json`), "utf8"));
  return `v${/"v(\d+) /.exec(stored.spec.code)?.[1]}`;
}

/** The version each of `calls` sequential invocations answered, and how many replicas answered. */
async function served(
  p: TestPlatform,
  name: string,
  calls: number,
): Promise<{ versions: Set<string>; pids: Set<string> }> {
  const versions = new Set<string>();
  const pids = new Set<string>();
  for (let i = 0; i < calls; i++) {
    const res = await p.invoke(name);
    expect(res.status, res.body).toBe(200);
    const [version, pid] = res.body.split(" ");
    versions.add(version as string);
    pids.add(pid as string);
  }
  return { versions, pids };
}

describe.each(["python", "nodejs"] as const)("%s: concurrent deploys of one function", (runtime) => {
  it("leave every replica serving the stored code, before and after replicas are replaced", async () => {
    const p = await startTestPlatform({ backend: { poolSize: 2 } });
    stops.push(() => p.stop());
    const name = `race-${runtime}`;
    const first = await p.admin("PUT", `/functions/${name}`, manifest(name, runtime, 0));
    expect(first.status, first.body).toBe(201);

    const answers = await Promise.all(
      Array.from({ length: VERSIONS }, (_, i) => p.admin("PUT", `/functions/${name}`, manifest(name, runtime, i + 1))),
    );
    for (const a of answers) expect(a.status, a.body).toBe(200);

    const stored = await storedVersion(p, name);
    expect(stored).toMatch(/^v[1-8]$/);
    const now = await served(p, name, 12);
    expect([...now.versions]).toEqual([stored]);
    expect(now.pids.size).toBeGreaterThanOrEqual(2);

    // Replace every replica: the replacements must load the same code, not an older one.
    for (const pid of p.backend.runnerPids(name)) process.kill(pid, "SIGKILL");
    await waitFor("replicas to be replaced", () => {
      const pids = p.backend.runnerPids(name);
      return pids.length >= 2 && pids.every((pid) => !now.pids.has(String(pid))) ? true : undefined;
    });
    const later = await served(p, name, 12);
    expect([...later.versions]).toEqual([stored]);
  });
});

describe("concurrent deploys and a restart", () => {
  it("the platform restarted on the same data directory serves the code stored last", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "faas-race-"));
    stops.push(() => rm(dataDir, { recursive: true, force: true }));
    const p = await startTestPlatform({ backend: { poolSize: 2 }, dataDir });
    const name = "race-restart";
    const answers = await Promise.all(
      Array.from({ length: 4 }, (_, i) => p.admin("PUT", `/functions/${name}`, manifest(name, "python", i + 5))),
    );
    for (const a of answers) expect([200, 201]).toContain(a.status);
    const stored = await storedVersion(p, name);
    const before = await served(p, name, 6);
    expect([...before.versions]).toEqual([stored]);
    await p.stop();
    const again = await startTestPlatform({ backend: { poolSize: 1 }, dataDir });
    stops.push(() => again.stop());
    const after = await served(again, name, 6);
    expect([...after.versions]).toEqual([stored]);
  });
});

/**
 * Code that, once `armed` exists, says it started importing (`started`) and
 * waits for `go` before it finishes: a cold start held mid-load while the test
 * deploys new code.
 */
function heldCode(runtime: Runtime, dir: string, answer: string, failAfterGo = false): string {
  const [armed, started, go] = ["armed", "started", "go"].map((f) => JSON.stringify(join(dir, f)));
  if (runtime === "python") {
    return [
      "import os, time",
      `if os.path.exists(${armed}):`,
      `    open(${started}, "w").close()`,
      `    while not os.path.exists(${go}):`,
      "        time.sleep(0.005)",
      ...(failAfterGo ? ['    raise RuntimeError("the older code fails to load")'] : []),
      "def handle(req):",
      `    return "${answer}"`,
      "",
    ].join("\n");
  }
  return [
    'import { existsSync, writeFileSync } from "node:fs";',
    `if (existsSync(${armed})) {`,
    `  writeFileSync(${started}, "");`,
    "  const nap = new Int32Array(new SharedArrayBuffer(4));",
    `  while (!existsSync(${go})) Atomics.wait(nap, 0, 0, 5);`,
    ...(failAfterGo ? ['  throw new Error("the older code fails to load");'] : []),
    "}",
    `export const handle = () => "${answer}";`,
    "",
  ].join("\n");
}

function plainCode(runtime: Runtime, answer: string): string {
  return runtime === "python"
    ? `def handle(req):\n    return "${answer}"\n`
    : `export const handle = () => "${answer}";\n`;
}

const deployDuringColdStart = [
  { runtime: "python", oldFails: false },
  { runtime: "nodejs", oldFails: false },
  { runtime: "python", oldFails: true },
  { runtime: "nodejs", oldFails: true },
] as const;

describe.each(deployDuringColdStart)(
  "$runtime: a deploy during a cold start (older code fails to load: $oldFails)",
  ({ runtime, oldFails }) => {
    it("loses none of the requests parked for the cold start; later calls get the new code", async () => {
      const dir = await mkdtemp(join(tmpdir(), "faas-held-"));
      stops.push(() => rm(dir, { recursive: true, force: true }));
      const p = await startTestPlatform({ backend: { poolSize: 2 } });
      stops.push(() => p.stop());
      const name = `mid-load-${runtime}${oldFails ? "-fails" : ""}`;
      const spec = (code: string) => ({
        apiVersion: "faas.example.com/v1",
        kind: "Function",
        metadata: { name },
        spec: { runtime, code, minReplicas: 0, maxReplicas: 1 },
      });
      const first = await p.admin("PUT", `/functions/${name}`, spec(heldCode(runtime, dir, "old", oldFails)));
      expect(first.status, first.body).toBe(201);
      await writeFile(join(dir, "armed"), "");
      // A burst for the function at zero: one cold start, held in its import.
      const calls = Promise.all(Array.from({ length: 5 }, () => p.invoke(name)));
      await waitFor("the cold start's import to begin", () => (existsSync(join(dir, "started")) ? true : undefined));
      const redeploy = await p.admin("PUT", `/functions/${name}`, spec(plainCode(runtime, "new")));
      expect(redeploy.status, redeploy.body).toBe(200);
      // Calls made after the deploy answered, while the older code's cold start is still loading.
      const late = Promise.all(Array.from({ length: 3 }, () => p.invoke(name)));
      await waitFor("the late calls to park", () => (p.gateway.activator.queued(name) >= 3 ? true : undefined));
      await writeFile(join(dir, "go"), "");
      // Those sent before the deploy answered may get either code; none may fail. If the older code
      // fails to load, the replica sends them back unrun and they wait for the new code.
      for (const a of await calls) {
        expect(a.status, a.body).toBe(200);
        expect(oldFails ? ["new"] : ["old", "new"]).toContain(a.body);
      }
      for (const a of await late) {
        expect(a.status, a.body).toBe(200);
        expect(a.body).toBe("new");
      }
      await rm(join(dir, "armed"));
      const after = await p.invoke(name);
      expect(after.status, after.body).toBe(200);
      expect(after.body).toBe("new");
    });
  },
);
