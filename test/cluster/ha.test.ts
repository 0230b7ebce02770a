/**
 * Two gateway replicas and two in-cluster operator replicas (leader election)
 * pass the walkthrough: hello from zero, and a burst answered in full.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kubectl, kubectlJson, type PortForward, repoRoot, waitFor } from "./fixture.js";
import {
  applyFunction,
  burstFromZero,
  deleteFunction,
  deploymentReplicas,
  functionPods,
  gatewayMetric,
  gatewayPortForward,
  installCrdAndGateway,
  invoke,
  pythonFunction,
  systemPods,
  waitForPool,
} from "./support/platform.js";

const NS = "default";

interface Lease {
  spec: { holderIdentity?: string };
}

describe("HA: 2 gateways, 2 operators with leader election", () => {
  let pf: PortForward;

  beforeAll(async () => {
    await installCrdAndGateway();
    await deleteFunction(NS, "hello");
    await deleteFunction(NS, "ha-pool");
    await kubectl(["apply", "-f", join(repoRoot, "deploy/operator.yaml")]);
    await kubectl(["-n", "faas-system", "rollout", "status", "deployment/faas-operator", "--timeout=240s"], {
      timeoutMs: 250_000,
    });
    pf = await gatewayPortForward();
  });
  afterAll(async () => {
    pf?.close();
    await deleteFunction(NS, "hello").catch(() => {});
    await deleteFunction(NS, "ha-pool").catch(() => {});
    await kubectl(["delete", "-f", join(repoRoot, "deploy/operator.yaml"), "--ignore-not-found", "--wait=true"], {
      allowFailure: true,
      timeoutMs: 180_000,
    });
  });

  it("runs two gateways and elects exactly one of two operators", async () => {
    expect(await systemPods("faas-gateway")).toHaveLength(2);
    const names = await systemPods("faas-operator");
    expect(names).toHaveLength(2);
    // A Lease left by operators of an earlier run expires first; then one of these two holds it.
    const holder = await waitFor(
      "a lease holder among the running operators",
      async () => {
        const lease = await kubectlJson<Lease>(["-n", "faas-system", "get", "lease", "faas-operator"]);
        const h = lease.spec.holderIdentity;
        return h && names.includes(h) ? h : undefined;
      },
      { timeoutMs: 60_000 },
    );
    expect(names).toContain(holder);
  });

  it("serves hello from zero and a burst of 300 through two gateways", async () => {
    await applyFunction(NS, readFileSync(join(repoRoot, "function-hello.yaml"), "utf8"), "hello");
    expect(await deploymentReplicas(NS, "hello")).toBe(0);
    expect(await functionPods(NS, "hello")).toEqual([]);
    const first = await invoke(pf.localPort, "/invoke/hello");
    expect(first.status).toBe(200);
    expect(first.body).toBe("hello from runner");
    await waitFor("hello's own pod", async () => ((await functionPods(NS, "hello")).length === 1 ? true : undefined));

    const b = await burstFromZero(NS, "hello", 300, pf.localPort);
    expect(b.byStatus).toEqual({ 200: 300 });
    expect(b.scalePatches).toBe(1);
    expect(b.pods).toBe(1);
  });

  it("a cold burst through both gateways claims at most one pool pod each and specializes none twice", async () => {
    await applyFunction(NS, pythonFunction("ha-pool", 'def handle(req):\n    return "both gateways"'), "ha-pool");
    await waitForPool(NS, "python", 2);
    const svc = await kubectlJson<{ spec: { clusterIP: string } }>(["-n", "faas-system", "get", "svc", "faas-gateway"]);
    const claimsBefore = await gatewayMetric("faas_pool_claims_total", { result: "claimed" });
    // New connections through the Service: kube-proxy spreads them over both gateways.
    const replies = await Promise.all(
      Array.from({ length: 200 }, () =>
        fetch(`http://${svc.spec.clusterIP}:8000/invoke/ha-pool`, { signal: AbortSignal.timeout(60_000) }).then(
          async (r) => ({ status: r.status, body: await r.text() }),
        ),
      ),
    );
    expect(replies.filter((r) => r.status !== 200 || r.body !== "both gateways")).toEqual([]);
    const claims = (await gatewayMetric("faas_pool_claims_total", { result: "claimed" })) - claimsBefore;
    expect(claims).toBeGreaterThanOrEqual(1);
    expect(claims).toBeLessThanOrEqual(2);
    // Every pool pod's runner logged at most one specialization.
    const pods = await kubectlJson<{ items: { metadata: { name: string } }[] }>([
      "-n",
      NS,
      "get",
      "pods",
      "-l",
      "faas.example.com/pool",
    ]);
    for (const p of pods.items) {
      const logs = await kubectl(["-n", NS, "logs", p.metadata.name], { allowFailure: true });
      const specialized = logs.stdout.split("\n").filter((l) => l.includes('"specialized"')).length;
      expect(specialized, p.metadata.name).toBeLessThanOrEqual(1);
    }
    console.log(`ha: 200 cold requests through both gateways → 200×200, ${claims} pool claim(s)`);
  });
});
