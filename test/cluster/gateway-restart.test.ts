/**
 * A gateway pod deleted while functions are warm, 20 times: each replacement
 * serves every warm function on its first request (no cold start), and its
 * API-server call counter shows no scale call. Requests go straight to the new
 * pod's IP, so the first request is the replacement's own.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kubectl, waitFor } from "./fixture.js";
import {
  applyFunction,
  deleteFunction,
  deploymentReplicas,
  functionPods,
  installCrdAndGateway,
  type LocalOperator,
  pythonFunction,
  startLocalOperator,
  systemPodObjects,
  systemPods,
} from "./support/platform.js";

const NS = "default";
const FUNCTIONS = ["gr-a", "gr-b", "gr-c"];
const ROUNDS = Number(process.env.FAAS_GATEWAY_RESTARTS ?? 20);

interface Pod {
  metadata: { name: string; deletionTimestamp?: string };
  status?: { podIP?: string; conditions?: { type: string; status: string }[] };
}

async function readyGatewayPods(): Promise<Pod[]> {
  const pods = await systemPodObjects<Pod>("faas-gateway");
  return pods.filter(
    (p) =>
      !p.metadata.deletionTimestamp &&
      p.status?.podIP &&
      p.status.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
  );
}

/** Values of one metric on one pod, summed over the series whose labels match. */
function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)))
      total += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return total;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
};

describe("gateway pod replaced while functions are warm", () => {
  let operator: LocalOperator;

  beforeAll(async () => {
    await installCrdAndGateway();
    // Every gateway pod runs the image just loaded.
    await kubectl(["-n", "faas-system", "rollout", "restart", "deployment/faas-gateway"]);
    await kubectl(["-n", "faas-system", "rollout", "status", "deployment/faas-gateway", "--timeout=240s"], {
      timeoutMs: 250_000,
    });
    for (const fn of FUNCTIONS) await deleteFunction(NS, fn);
    operator = await startLocalOperator(NS);
    for (const fn of FUNCTIONS) {
      await applyFunction(
        NS,
        pythonFunction(fn, `def handle(req):\n    return "warm ${fn}"`, { minReplicas: 1, maxReplicas: 1 }),
        fn,
      );
    }
    for (const fn of FUNCTIONS) {
      await waitFor(
        `${fn} ready`,
        async () => {
          const r = await kubectl([
            "-n",
            NS,
            "get",
            "deployment",
            `fn-${fn}-deploy`,
            "-o",
            "jsonpath={.status.readyReplicas}",
          ]);
          return r.stdout === "1" ? true : undefined;
        },
        { timeoutMs: 120_000 },
      );
    }
  });
  afterAll(async () => {
    for (const fn of FUNCTIONS) await deleteFunction(NS, fn).catch(() => {});
    await operator?.stop();
  });

  it(`serves every warm function on the replacement's first request, ${ROUNDS} times, with no scale call`, async () => {
    const podsBefore = Object.fromEntries(
      await Promise.all(FUNCTIONS.map(async (f) => [f, await functionPods(NS, f)])),
    );
    const readyMs: number[] = [];
    const firstMs: number[] = [];
    const failures: string[] = [];
    const apiCalls: Record<string, number>[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const before = await readyGatewayPods();
      const victim = before[round % before.length];
      if (victim === undefined) throw new Error("no ready gateway pod");
      const known = new Set(before.map((p) => p.metadata.name));
      const t0 = performance.now();
      await kubectl(["-n", "faas-system", "delete", "pod", victim.metadata.name, "--wait=false"]);
      const fresh = await waitFor(
        "a replacement gateway pod ready",
        async () => (await readyGatewayPods()).find((p) => !known.has(p.metadata.name)),
        { timeoutMs: 90_000, intervalMs: 100 },
      );
      readyMs.push(performance.now() - t0);
      const base = `http://${fresh.status?.podIP}:8000`;
      for (const fn of FUNCTIONS) {
        const s = performance.now();
        const res = await fetch(`${base}/invoke/${fn}`, { signal: AbortSignal.timeout(30_000) });
        const body = await res.text();
        firstMs.push(performance.now() - s);
        if (res.status !== 200 || body !== `warm ${fn}` || res.headers.get("x-faas-cold-start") === "true") {
          failures.push(
            `round ${round} ${fn}: ${res.status} cold=${res.headers.get("x-faas-cold-start")} ${body.slice(0, 120)}`,
          );
        }
      }
      // Metrics are on their own port (gateway-deploy.yaml), reachable from the node.
      const text = await (await fetch(`http://${fresh.status?.podIP}:9090/metrics`)).text();
      apiCalls.push({
        scalePatches: metric(text, "faas_kube_api_requests_total", { verb: "patch", resource: "deployments/scale" }),
        scaleGets: metric(text, "faas_kube_api_requests_total", { verb: "get", resource: "deployments/scale" }),
        functionPatches: metric(text, "faas_kube_api_requests_total", { verb: "patch", resource: "functions" }),
        lists: metric(text, "faas_kube_api_requests_total", { verb: "list" }),
        watches: metric(text, "faas_kube_api_requests_total", { verb: "watch" }),
        coldStarts: metric(text, "faas_cold_starts_total"),
        inconsistencies: metric(text, "faas_routing_inconsistencies_total"),
      });
    }
    const sum = (k: string) => apiCalls.reduce((a, c) => a + (c[k] ?? 0), 0);
    const figures = {
      rounds: ROUNDS,
      firstRequests: firstMs.length,
      failures: failures.length,
      replacementReadyMsMedian: Math.round(median(readyMs)),
      replacementReadyMsMax: Math.round(Math.max(...readyMs)),
      firstRequestMsMedian: Math.round(median(firstMs) * 10) / 10,
      firstRequestMsMax: Math.round(Math.max(...firstMs) * 10) / 10,
      scalePatches: sum("scalePatches"),
      scaleGets: sum("scaleGets"),
      coldStarts: sum("coldStarts"),
      inconsistencies: sum("inconsistencies"),
      listsPerPod: median(apiCalls.map((c) => c.lists ?? 0)),
      watchesPerPod: median(apiCalls.map((c) => c.watches ?? 0)),
    };
    console.log(`gateway restarts: ${JSON.stringify(figures)}`);
    expect(failures).toEqual([]);
    expect(figures.scalePatches).toBe(0);
    expect(figures.scaleGets).toBe(0);
    expect(figures.coldStarts).toBe(0);
    // The functions' own pods never moved: nothing was scaled.
    for (const fn of FUNCTIONS) {
      expect(await functionPods(NS, fn)).toEqual(podsBefore[fn]);
      expect(await deploymentReplicas(NS, fn)).toBe(1);
    }
    expect((await systemPods("faas-gateway")).length).toBeGreaterThanOrEqual(1);
  }, 1_200_000);
});
