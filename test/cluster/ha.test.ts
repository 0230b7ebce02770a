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
  gatewayPortForward,
  installCrdAndGateway,
  invoke,
  systemPods,
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
    await kubectl(["apply", "-f", join(repoRoot, "deploy/operator.yaml")]);
    await kubectl(["-n", "faas-system", "rollout", "status", "deployment/faas-operator", "--timeout=240s"], {
      timeoutMs: 250_000,
    });
    pf = await gatewayPortForward();
  });
  afterAll(async () => {
    pf?.close();
    await deleteFunction(NS, "hello").catch(() => {});
    await kubectl(["delete", "-f", join(repoRoot, "deploy/operator.yaml"), "--ignore-not-found", "--wait=true"], {
      allowFailure: true,
      timeoutMs: 180_000,
    });
  });

  it("runs two gateways and elects exactly one of two operators", async () => {
    expect(await systemPods("faas-gateway")).toHaveLength(2);
    const names = await systemPods("faas-operator");
    expect(names).toHaveLength(2);
    const holder = await waitFor("a lease holder", async () => {
      const lease = await kubectlJson<Lease>(["-n", "faas-system", "get", "lease", "faas-operator"]);
      return lease.spec.holderIdentity || undefined;
    });
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
});
