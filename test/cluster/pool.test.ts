/**
 * The warm pool on the cluster (ADR 0008): the operator keeps generic runner
 * pods per runtime; a cold start claims one and specializes it in
 * milliseconds; the function's own pod takes over and the claimed pod goes;
 * the pool refills; `/specialize` is closed to anyone without the pool token
 * and to function pods; a claimed pod whose runner restarts is never routed to
 * again; a code update under load loses nothing and old code stops answering;
 * with the pool off, cold starts fall back to the Deployment path.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { httpGet, kubectl, kubectlJson, type PortForward, waitFor } from "./fixture.js";
import {
  applyFunction,
  claimedPods,
  deleteFunction,
  functionPods,
  gatewayMetric,
  gatewayPortForward,
  idlePoolPods,
  installCrdAndGateway,
  invoke,
  type LocalOperator,
  pythonFunction,
  startLocalOperator,
  systemPods,
  waitForPool,
} from "./support/platform.js";

const NS = "default";
const FNS = ["pool-hello", "pool-node", "pool-update", "pool-crash", "pool-spin", "pool-off"];

interface Pod {
  metadata: { name: string; labels?: Record<string, string>; ownerReferences?: { kind: string; name: string }[] };
  status?: { podIP?: string; containerStatuses?: { restartCount: number }[] };
}

async function pod(name: string): Promise<Pod | undefined> {
  const r = await kubectl(["-n", NS, "get", "pod", name, "-o", "json"], { allowFailure: true });
  return r.code === 0 ? (JSON.parse(r.stdout) as Pod) : undefined;
}

function postSpecialize(ip: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return fetch(`http://${ip}:8080/specialize`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({
      name: "intruder",
      runtime: "python",
      handler: "main.handle",
      code: "def handle(req):\n    return 'owned'\n",
      timeoutSeconds: 5,
      env: {},
    }),
    signal: AbortSignal.timeout(5_000),
  }).then(async (r) => ({ status: r.status, body: await r.text() }));
}

describe("warm pool", () => {
  let operator: LocalOperator;
  let pf: PortForward;

  beforeAll(async () => {
    await installCrdAndGateway();
    for (const fn of FNS) await deleteFunction(NS, fn);
    // A long hand-off in one test is set per operator below; the default here.
    operator = await startLocalOperator(NS);
    pf = await gatewayPortForward();
    await waitForPool(NS, "python", 2, 180_000);
    await waitForPool(NS, "nodejs", 2, 180_000);
  });
  afterAll(async () => {
    pf?.close();
    for (const fn of FNS) await deleteFunction(NS, fn).catch(() => {});
    await operator?.stop();
  });

  it("keeps a pool per runtime, and a cold start is a claim: specialize, then the Deployment takes over", async () => {
    await applyFunction(NS, pythonFunction("pool-hello", 'def handle(req):\n    return "from the pool"'), "pool-hello");
    const before = new Set(await idlePoolPods(NS, "python"));
    const first = await invoke(pf.localPort, "/invoke/pool-hello");
    expect(first.status).toBe(200);
    expect(first.body).toBe("from the pool");
    expect(first.headers["x-faas-cold-start"]).toBe("true");
    expect(first.headers["server-timing"]).toMatch(/claim;dur=[\d.]+, specialize;dur=[\d.]+$/);
    const [claimed] = await claimedPods(NS, "pool-hello");
    expect(claimed).toBeDefined();
    expect(before.has(claimed as string)).toBe(true);
    const p = await pod(claimed as string);
    // Out of the pool (its ReplicaSet let it go) and owned by the Function.
    expect(p?.metadata.labels?.["faas.example.com/pool-state"]).toBe("claimed");
    expect(p?.metadata.ownerReferences?.map((o) => `${o.kind}/${o.name}`)).toEqual(["Function/pool-hello"]);

    // The second call is warm on the claimed pod (or already on the function's own pod).
    const second = await invoke(pf.localPort, "/invoke/pool-hello");
    expect(second.status).toBe(200);
    expect(second.headers["x-faas-cold-start"]).toBeUndefined();

    const own = await waitFor("pool-hello's own pod", async () => {
      const pods = await functionPods(NS, "pool-hello");
      return pods.length === 1 ? pods : undefined;
    });
    expect(own[0]).toMatch(/^fn-pool-hello-deploy-/);
    await waitFor("the claimed pod to be retired", async () =>
      (await claimedPods(NS, "pool-hello")).length === 0 ? true : undefined,
    );
    expect((await invoke(pf.localPort, "/invoke/pool-hello")).body).toBe("from the pool");
    // The pool refills to its size.
    await waitForPool(NS, "python", 2);
    console.log(`pool: first call ${first.ms.toFixed(1)} ms (${String(first.headers["server-timing"])})`);
  });

  it("claims Node.js pool pods for Node.js functions", async () => {
    await applyFunction(
      NS,
      `apiVersion: faas.example.com/v1
kind: Function
metadata:
  name: pool-node
spec:
  runtime: nodejs
  handler: main.handle
  code: |
    export function handle() { return "node from the pool"; }
`,
      "pool-node",
    );
    const r = await invoke(pf.localPort, "/invoke/pool-node");
    expect(r.status).toBe(200);
    expect(r.body).toBe("node from the pool");
    expect(r.headers["server-timing"]).toMatch(/claim;dur=/);
    await waitForPool(NS, "nodejs", 2);
  });

  it("refuses /specialize without the pool token, and on a function pod outright", async () => {
    await waitForPool(NS, "python", 1);
    const [idle] = await idlePoolPods(NS, "python");
    const ip = (await pod(idle as string))?.status?.podIP as string;
    expect((await postSpecialize(ip)).status).toBe(401);
    expect((await postSpecialize(ip, { authorization: "Bearer not-the-token" })).status).toBe(401);
    // Still generic and idle: the refusals changed nothing.
    expect((await httpGet(`http://${ip}:8080/readyz`)).status).toBe(200);
    expect((await pod(idle as string))?.metadata.labels?.["faas.example.com/pool-state"]).toBe("idle");

    const [own] = await functionPods(NS, "pool-hello");
    const ownIp = (await pod(own as string))?.status?.podIP as string;
    const token = Buffer.from(
      (await kubectlJson<{ data: { token: string } }>(["-n", NS, "get", "secret", "faas-pool-token"])).data.token,
      "base64",
    ).toString();
    const r = await postSpecialize(ownIp, { authorization: `Bearer ${token}` });
    expect(r.status).toBe(403);
    expect(r.body).toMatch(/FORBIDDEN/);
  });

  it("updates code under load with no failed request, and no old answer once the update is done", async () => {
    await waitForPool(NS, "python", 1);
    const code = (v: string) => `def handle(req):\n    return "${v}"`;
    await applyFunction(NS, pythonFunction("pool-update", code("v1")), "pool-update");
    const cold = await invoke(pf.localPort, "/invoke/pool-update");
    expect(cold.body).toBe("v1");
    expect(await claimedPods(NS, "pool-update")).toHaveLength(1);

    let stop = false;
    const replies: { status: number; body: string; at: number }[] = [];
    const load = Array.from({ length: 8 }, async () => {
      while (!stop) {
        const r = await invoke(pf.localPort, "/invoke/pool-update");
        replies.push({ status: r.status, body: r.body, at: Date.now() });
      }
    });
    await new Promise((r) => setTimeout(r, 500));
    await kubectl(["-n", NS, "apply", "-f", "-"], { input: pythonFunction("pool-update", code("v2")) });
    // Done: the operator reports the new generation Ready, and the roll-out is complete.
    const doneAt = await waitFor(
      "the update to be reported done",
      async () => {
        const fn = await kubectlJson<{
          metadata: { generation: number };
          status?: { observedGeneration?: number; conditions?: { type: string; status: string }[] };
        }>(["-n", NS, "get", "function", "pool-update"]);
        const ready = fn.status?.conditions?.find((c) => c.type === "Ready")?.status === "True";
        if (fn.status?.observedGeneration !== fn.metadata.generation || !ready) return undefined;
        const rollout = await kubectl(
          ["-n", NS, "rollout", "status", "deployment/fn-pool-update-deploy", "--timeout=1s"],
          { allowFailure: true },
        );
        return rollout.code === 0 ? Date.now() : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 200 },
    );
    await new Promise((r) => setTimeout(r, 3_000));
    stop = true;
    await Promise.all(load);
    const failed = replies.filter((r) => r.status !== 200);
    expect(failed).toEqual([]);
    const late = replies.filter((r) => r.at > doneAt + 100 && r.body !== "v2");
    expect(late).toEqual([]);
    expect(replies.some((r) => r.body === "v2")).toBe(true);
    // The claimed pod held v1: it is gone.
    await waitFor("no claimed pod with old code", async () =>
      (await claimedPods(NS, "pool-update")).length === 0 ? true : undefined,
    );
    console.log(`pool: code update under load: ${replies.length} requests, 0 failed`);
  });

  it("never routes to a claimed pod whose runner restarted, and retires it", async () => {
    // A long hand-off keeps the claimed pod in place while the Deployment's pod is not serving yet.
    await operator.stop();
    operator = await startLocalOperator(NS, { FAAS_POOL_HANDOFF_MS: "600000" });
    await waitForPool(NS, "python", 1);
    await applyFunction(
      NS,
      pythonFunction(
        "pool-crash",
        'import os\ndef handle(req):\n    if req.path == "/crash":\n        os._exit(1)\n    return "alive"',
      ),
      "pool-crash",
    );
    expect((await invoke(pf.localPort, "/invoke/pool-crash")).body).toBe("alive");
    const [claimed] = await claimedPods(NS, "pool-crash");
    expect(claimed).toBeDefined();
    // Stop the function's own pods from taking over: the claimed pod is all there is.
    await kubectl(["-n", NS, "scale", "deployment", "fn-pool-crash-deploy", "--replicas=0"]);
    await waitFor("no own pod", async () => ((await functionPods(NS, "pool-crash")).length === 0 ? true : undefined));
    // POST: not retried by the gateway on another replica (it may have run).
    const crash = await invoke(pf.localPort, "/invoke/pool-crash/crash", { method: "POST" });
    expect(crash.status).toBe(502);
    // Every later call succeeds, and none is served by the restarted runner (it answers 503 generic).
    for (let i = 0; i < 20; i++) {
      const r = await invoke(pf.localPort, "/invoke/pool-crash");
      expect(r.status, r.body).toBe(200);
      expect(r.body).toBe("alive");
    }
    await waitFor(
      "the restarted claimed pod to be retired",
      async () => {
        const p = await pod(claimed as string);
        return p === undefined || !(await claimedPods(NS, "pool-crash")).includes(claimed as string) ? true : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    await operator.stop();
    operator = await startLocalOperator(NS);
  });

  it("code that never finishes loading: a cold call fails fast naming the function, the Function reports its pod failing", async () => {
    await waitForPool(NS, "python", 1);
    await applyFunction(
      NS,
      // minReplicas 1: its own pod keeps trying (no scale to zero while the Function reports it).
      pythonFunction("pool-spin", "while True:\n    pass\ndef handle(req):\n    return 'never'", { minReplicas: 1 }),
      "pool-spin",
    );
    const t0 = performance.now();
    const r = await invoke(pf.localPort, "/invoke/pool-spin");
    const seconds = (performance.now() - t0) / 1000;
    expect(r.status).toBe(500);
    expect(JSON.parse(r.body)).toMatchObject({ error: { code: "FUNCTION_LOAD_FAILED" } });
    expect(r.body).toMatch(/pool-spin/);
    expect(r.body).toMatch(/did not finish loading within/);
    // The runner's load timeout (10 s) answered, not the gateway's 60 s park timeout.
    expect(seconds).toBeLessThan(30);
    // The Deployment's own pod never gets ready either: the Function says so.
    const reason = await waitFor(
      "the Function to report its failing pod",
      async () => {
        const f = await kubectlJson<{ status?: { conditions?: { type: string; status: string; reason: string }[] } }>([
          "-n",
          NS,
          "get",
          "function",
          "pool-spin",
        ]);
        const ready = f.status?.conditions?.find((c) => c.type === "Ready");
        return ready?.status === "False" && ready.reason === "CrashLoop" ? ready.reason : undefined;
      },
      { timeoutMs: 180_000, intervalMs: 1_000 },
    );
    expect(reason).toBe("CrashLoop");
    // The pool pod that tried it went back to the pool (its runner exited and restarted generic).
    await waitForPool(NS, "python", 2);
    await deleteFunction(NS, "pool-spin");
    console.log(`pool: spinning module refused in ${seconds.toFixed(1)} s`);
  });

  it("falls back to the Deployment path when the pool is empty, and counts why", async () => {
    await operator.stop();
    operator = await startLocalOperator(NS, { FAAS_POOL_SIZE: "0" });
    await waitFor("the python pool to drain", async () =>
      (await idlePoolPods(NS, "python")).length === 0 ? true : undefined,
    );
    const before =
      (await gatewayMetric("faas_pool_fallbacks_total", { reason: "disabled" })) +
      (await gatewayMetric("faas_pool_fallbacks_total", { reason: "empty" }));
    const announced = async (relayed: boolean): Promise<number> =>
      gatewayMetric("faas_pod_announcements_total", { result: "accepted", relayed: String(relayed) });
    const [directBefore, relayedBefore] = [await announced(false), await announced(true)];
    const gateways = (await systemPods("faas-gateway")).length;
    await applyFunction(NS, pythonFunction("pool-off", 'def handle(req):\n    return "deployment path"'), "pool-off");
    const r = await invoke(pf.localPort, "/invoke/pool-off");
    expect(r.status).toBe(200);
    expect(r.body).toBe("deployment path");
    expect(r.headers["server-timing"]).not.toMatch(/claim;/);
    expect(r.headers["server-timing"]).toMatch(/scale;dur=.*started;dur=.*ready;dur=/);
    const after =
      (await gatewayMetric("faas_pool_fallbacks_total", { reason: "disabled" })) +
      (await gatewayMetric("faas_pool_fallbacks_total", { reason: "empty" }));
    expect(after).toBe(before + 1);
    // The pod started without volumes and announced itself: one gateway took it, and passed it to the others.
    const pod = await kubectlJson<{ spec: { volumes?: unknown[] } }>([
      "-n",
      NS,
      "get",
      "pod",
      (await functionPods(NS, "pool-off"))[0] ?? "none",
    ]);
    expect(pod.spec.volumes).toBeUndefined();
    await waitFor("the announcement on every gateway", async () =>
      (await announced(false)) === directBefore + 1 && (await announced(true)) === relayedBefore + gateways - 1
        ? true
        : undefined,
    );
    await operator.stop();
    operator = await startLocalOperator(NS);
    await waitForPool(NS, "python", 2, 180_000);
  });
});
