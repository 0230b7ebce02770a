/**
 * Faults under load on the real cluster (docs/reliability.md records the
 * counts): the API server frozen for 30 s, a gateway pod deleted, a function's
 * runner SIGKILLed. Traffic goes straight to the gateway Service's ClusterIP
 * (reachable from this host), not through kubectl port-forward, which itself
 * needs the API server.
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { Agent, request } from "node:http";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kubectl, kubectlJson, repoRoot, waitFor } from "./fixture.js";
import {
  applyFunction,
  deleteFunction,
  functionPods,
  installCrdAndGateway,
  type LocalOperator,
  pythonFunction,
  startLocalOperator,
  systemPods,
  waitForPool,
} from "./support/platform.js";

const NS = "default";
const FNS = ["fault-warm", "fault-cold", "fault-cold-node", "fault-kill"];
const clusterRunDir = execFileSync("bash", ["-c", ". hack/cluster/lib.sh && echo $RUN"], {
  cwd: repoRoot,
  encoding: "utf8",
}).trim();

const agent = new Agent({ keepAlive: true, maxSockets: 64, timeout: 2000 });

interface Hit {
  startMs: number;
  endMs: number;
  status: number;
  code?: string;
  error?: string;
}

function hit(
  host: string,
  path: string,
  timeoutMs = 60_000,
  body?: string,
  headers: Record<string, string> = {},
): Promise<Hit> {
  const startMs = performance.now();
  return new Promise((resolve) => {
    const method = body === undefined ? "GET" : "POST";
    const req = request({ host, port: 8000, path, agent, method, headers }, (res) => {
      res.resume();
      res.on("end", () =>
        resolve({
          startMs,
          endMs: performance.now(),
          status: res.statusCode ?? 0,
          code: res.headers["x-faas-error"] as string | undefined,
        }),
      );
      res.on("error", (err) => resolve({ startMs, endMs: performance.now(), status: 0, error: err.message }));
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error("timeout")));
    req.on("error", (err: NodeJS.ErrnoException) =>
      resolve({ startMs, endMs: performance.now(), status: 0, error: err.code ?? err.message }),
    );
    req.end(body);
  });
}

/** `concurrency` loops calling `path` until `stop()`; every answer is kept. */
function load(host: string, path: string, concurrency: number, body?: string) {
  const hits: Hit[] = [];
  let running = true;
  const loops = Array.from({ length: concurrency }, async () => {
    while (running) hits.push(await hit(host, path, 60_000, body));
  });
  return {
    hits,
    async stop(): Promise<Hit[]> {
      running = false;
      await Promise.all(loops);
      return hits;
    },
  };
}

function tally(hits: Hit[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const h of hits) {
    const key = h.status === 0 ? `error ${h.error}` : h.code ? `${h.status} ${h.code}` : String(h.status);
    out[key] = (out[key] ?? 0) + 1;
  }
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Host PIDs of a pod's processes, found by its UID in their cgroup path. */
function podProcesses(podUid: string): { pid: number; cmdline: string }[] {
  const needles = [podUid, podUid.replaceAll("-", "_")];
  const out: { pid: number; cmdline: string }[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cgroup = readFileSync(`/proc/${entry}/cgroup`, "utf8");
      if (!needles.some((n) => cgroup.includes(n))) continue;
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8").replaceAll("\0", " ");
      out.push({ pid: Number(entry), cmdline });
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

describe("faults under load", () => {
  let operator: LocalOperator;
  let gatewayIp: string;

  beforeAll(async () => {
    await installCrdAndGateway();
    for (const fn of FNS) await deleteFunction(NS, fn);
    // A Python warm pool, and none for Node.js: a cold Node.js function must take the Deployment path,
    // which needs the API server.
    operator = await startLocalOperator(NS, { FAAS_POOL_SIZE_NODEJS: "0" });
    const svc = await kubectlJson<{ spec: { clusterIP: string } }>(["-n", "faas-system", "get", "svc", "faas-gateway"]);
    gatewayIp = svc.spec.clusterIP;
    await applyFunction(
      NS,
      pythonFunction("fault-warm", 'def handle(req):\n    return "warm"', { minReplicas: 1 }),
      "fault-warm",
    );
    await applyFunction(NS, pythonFunction("fault-cold", 'def handle(req):\n    return "cold"'), "fault-cold");
    await applyFunction(
      NS,
      `apiVersion: faas.example.com/v1
kind: Function
metadata:
  name: fault-cold-node
spec:
  runtime: nodejs
  handler: main.handle
  code: |
    export function handle() { return "cold node"; }
`,
      "fault-cold-node",
    );
    await applyFunction(
      NS,
      pythonFunction("fault-kill", 'import time\n\ndef handle(req):\n    time.sleep(0.3)\n    return "slow"', {
        minReplicas: 1,
        maxReplicas: 1,
      }),
      "fault-kill",
    );
    for (const fn of ["fault-warm", "fault-kill"]) {
      await waitFor(`${fn} warm through the Service`, async () =>
        (await hit(gatewayIp, `/invoke/${fn}`, 10_000)).status === 200 ? true : undefined,
      );
    }
  });
  afterAll(async () => {
    for (const fn of FNS) await deleteFunction(NS, fn).catch(() => {});
    await operator?.stop();
    agent.destroy();
  });

  it("API server frozen for 30 s: warm calls keep succeeding, cold calls are served from the pool or fail fast, then recover", async () => {
    const pid = Number(readFileSync(join(clusterRunDir, "kube-apiserver.pid"), "utf8").trim());
    expect(readFileSync(`/proc/${pid}/cmdline`, "utf8")).toContain("kube-apiserver");
    // The Python pool is full and no Node.js pool pod is left, so each cold call below has one path.
    await waitForPool(NS, "python", 2, 180_000);
    await waitFor(
      "no Node.js pool pod",
      async () => {
        const pods = await kubectlJson<{ items: unknown[] }>([
          "-n",
          NS,
          "get",
          "pods",
          "-l",
          "faas.example.com/pool=nodejs",
        ]);
        return pods.items.length === 0 ? true : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 500 },
    );
    const warm = load(gatewayIp, "/invoke/fault-warm", 4);
    await sleep(2000);
    const frozenAt = performance.now();
    let pooled: Promise<Hit>;
    let cold: Promise<Hit>;
    let bounded: Promise<Hit>;
    let again: Hit;
    const thaw = () => process.kill(pid, "SIGCONT");
    process.once("exit", thaw);
    try {
      process.kill(pid, "SIGSTOP");
      await sleep(1000);
      // A cold call a warm pool pod can serve (no API call needed), one that needs a new pod (the
      // Deployment path, which needs the API server), and one of those asking to wait at most 3 s.
      pooled = hit(gatewayIp, "/invoke/fault-cold", 120_000);
      cold = hit(gatewayIp, "/invoke/fault-cold-node", 120_000);
      bounded = hit(gatewayIp, "/invoke/fault-cold-node", 120_000, undefined, { "x-faas-deadline-ms": "3000" });
      await cold;
      // Asked again while the API server is still away.
      again = await hit(gatewayIp, "/invoke/fault-cold-node", 120_000);
      await sleep(30_000 - (performance.now() - frozenAt));
    } finally {
      thaw();
      process.off("exit", thaw);
    }
    const thawedAt = performance.now();
    const pooledHit = await pooled;
    const coldHit = await cold;
    const boundedHit = await bounded;
    const recovered = await waitFor(
      "a Deployment-path cold call to succeed after the API server is back",
      async () => {
        const h = await hit(gatewayIp, "/invoke/fault-cold-node", 30_000);
        return h.status === 200 ? h : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 500 },
    );
    const hits = await warm.stop();
    const during = hits.filter((h) => h.startMs >= frozenAt && h.endMs <= thawedAt);
    const failed = hits.filter((h) => h.status !== 200);
    const secs = (h: Hit): string => ((h.endMs - h.startMs) / 1000).toFixed(1);
    console.log(
      `faults/apiserver: frozen ${((thawedAt - frozenAt) / 1000).toFixed(1)} s; warm calls during it ${during.length} (${JSON.stringify(tally(during))}), failed overall ${failed.length}; ` +
        `cold call with a pool pod → ${pooledHit.status} after ${secs(pooledHit)} s; ` +
        `cold call needing a new pod → ${coldHit.status} ${coldHit.code ?? coldHit.error ?? ""} after ${secs(coldHit)} s, asked again → ${again.status} ${again.code ?? ""} after ${secs(again)} s; ` +
        `with x-faas-deadline-ms 3000 → ${boundedHit.status} ${boundedHit.code ?? boundedHit.error ?? ""} after ${secs(boundedHit)} s; ` +
        `a new-pod cold call succeeded ${((recovered.endMs - thawedAt) / 1000).toFixed(1)} s after the thaw`,
    );
    expect(during.length).toBeGreaterThan(100);
    expect(failed).toEqual([]);
    // A warm pool pod needs no API call: served at once.
    expect(pooledHit.status).toBe(200);
    expect(pooledHit.endMs - pooledHit.startMs).toBeLessThan(5_000);
    // A new pod needs the API server: a clear 503 within the cold-start API deadline (5 s), not a wait.
    expect({ status: coldHit.status, code: coldHit.code }).toEqual({ status: 503, code: "SCALE_UP_FAILED" });
    expect(coldHit.endMs - coldHit.startMs).toBeLessThan(8_000);
    expect({ status: again.status, code: again.code }).toEqual({ status: 503, code: "SCALE_UP_FAILED" });
    expect(again.endMs - again.startMs).toBeLessThan(3_000);
    // The client's own deadline comes first.
    expect([503, 504]).toContain(boundedHit.status);
    expect(boundedHit.endMs - boundedHit.startMs).toBeLessThan(5_000);
  });

  it("a gateway pod deleted under load: only requests in flight on it may fail, none after", async () => {
    const [victim] = await systemPods("faas-gateway");
    expect(victim).toBeDefined();
    const warm = load(gatewayIp, "/invoke/fault-warm", 8);
    await sleep(3000);
    const deletedAt = performance.now();
    await kubectl(["-n", "faas-system", "delete", "pod", victim as string, "--wait=true", "--timeout=120s"], {
      timeoutMs: 130_000,
    });
    const goneAt = performance.now();
    await sleep(5000);
    const hits = await warm.stop();
    await kubectl(["-n", "faas-system", "rollout", "status", "deployment/faas-gateway", "--timeout=180s"], {
      timeoutMs: 190_000,
    });
    const failed = hits.filter((h) => h.status !== 200);
    const after = hits.filter((h) => h.startMs > goneAt);
    const offsets = failed.map((h) => (h.startMs - deletedAt) / 1000);
    console.log(
      `faults/gateway-pod: ${hits.length} requests, ${failed.length} failed (${JSON.stringify(tally(failed))}) between ${Math.min(...offsets).toFixed(1)} s and ${Math.max(...offsets).toFixed(1)} s after the delete; pod took ${((goneAt - deletedAt) / 1000).toFixed(1)} s to go; ${after.length} requests after it was gone, ${after.filter((h) => h.status !== 200).length} failed`,
    );
    expect(after.length).toBeGreaterThan(50);
    expect(after.filter((h) => h.status !== 200)).toEqual([]);
    // Only requests in flight on the deleted pod may fail: at most one per client loop.
    expect(failed.length).toBeLessThanOrEqual(8);
  });

  it("a function's runner SIGKILLed under load: 502 only for its in-flight requests, then recovery", async () => {
    const [pod] = await functionPods(NS, "fault-kill");
    const meta = await kubectlJson<{ metadata: { uid: string } }>(["-n", NS, "get", "pod", pod as string]);
    const runners = podProcesses(meta.metadata.uid).filter((p) => p.cmdline.includes("faas_runner"));
    expect(runners.length).toBeGreaterThan(0);
    const concurrency = 4;
    // POST with a body: the gateway cannot replay it elsewhere, so in-flight calls surface as 502.
    const slow = load(gatewayIp, "/invoke/fault-kill", concurrency, "payload");
    await sleep(2000);
    const killedAt = performance.now();
    for (const r of runners) process.kill(r.pid, "SIGKILL");
    const recovered = await waitFor(
      "fault-kill answering again",
      async () => {
        await sleep(500);
        const recent = slow.hits.filter((h) => h.startMs > killedAt);
        return recent.slice(-concurrency * 2).length === concurrency * 2 &&
          recent.slice(-concurrency * 2).every((h) => h.status === 200)
          ? performance.now()
          : undefined;
      },
      { timeoutMs: 120_000 },
    );
    await sleep(2000);
    const hits = await slow.stop();
    const failed = hits.filter((h) => h.status !== 200);
    console.log(
      `faults/runner-kill: ${hits.length} requests, ${failed.length} failed (${JSON.stringify(tally(failed))}); answering again ${((recovered - killedAt) / 1000).toFixed(1)} s after the kill`,
    );
    expect(failed.every((h) => h.status === 502)).toBe(true);
    expect(failed.length).toBeLessThanOrEqual(concurrency);
    expect(hits.filter((h) => h.startMs > recovered).every((h) => h.status === 200)).toBe(true);
  });
});
