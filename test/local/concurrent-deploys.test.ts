/**
 * Deploys of one function are serialized (issue 7): after concurrent deploys
 * of different code through the admin API, the code every replica serves is
 * the code stored, and it stays so when replicas are replaced or the platform
 * restarts. The interleaving is forced: each version sleeps at import for a
 * time that shrinks with its index, so later deploys finish their trial load
 * before earlier ones.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
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
