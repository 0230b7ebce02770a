/**
 * The README's Kubernetes walkthrough on a real cluster, operator running
 * locally: no pod until the first request, exactly one pod and one scale patch
 * for a burst, scale to zero when idle but never under a request in flight.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kubectl, type PortForward, repoRoot, waitFor } from "./fixture.js";
import {
  applyFunction,
  burstFromZero,
  claimedPods,
  deleteFunction,
  deploymentReplicas,
  functionPods,
  gatewayPortForward,
  installCrdAndGateway,
  invoke,
  type LocalOperator,
  pythonFunction,
  startLocalOperator,
  waitForPool,
} from "./support/platform.js";

const NS = "default";

describe("walkthrough: CRD, gateway, local operator, hello from zero", () => {
  let operator: LocalOperator;
  let pf: PortForward;

  beforeAll(async () => {
    await installCrdAndGateway();
    for (const fn of ["hello", "idle", "slow"]) await deleteFunction(NS, fn);
    operator = await startLocalOperator(NS);
    pf = await gatewayPortForward();
  });
  afterAll(async () => {
    pf?.close();
    for (const fn of ["hello", "idle", "slow"]) await deleteFunction(NS, fn).catch(() => {});
    await operator?.stop();
  });

  it("serves hello from zero replicas: one pod appears, the second call is warm", async () => {
    const yaml = readFileSync(join(repoRoot, "function-hello.yaml"), "utf8");
    await applyFunction(NS, yaml, "hello");
    expect(await deploymentReplicas(NS, "hello")).toBe(0);
    await new Promise((r) => setTimeout(r, 3000));
    expect(await functionPods(NS, "hello")).toEqual([]);
    const { stdout } = await kubectl(["-n", NS, "get", "functions"]);
    expect(stdout).toMatch(/NAME\s+RUNTIME\s+READY\s+DESIRED\s+MIN\s+MAX\s+STATUS\s+AGE/);

    await waitForPool(NS, "python", 1);
    const first = await invoke(pf.localPort, "/invoke/hello");
    expect(first.status).toBe(200);
    expect(first.body).toBe("hello from runner");
    expect(first.headers["x-faas-cold-start"]).toBe("true");
    // Served by a pool pod the gateway claimed and specialized, not by a pod start.
    expect(first.headers["server-timing"]).toMatch(/^parked;dur=[\d.]+, claim;dur=[\d.]+, specialize;dur=[\d.]+$/);
    const claimed = await claimedPods(NS, "hello");
    expect(claimed).toHaveLength(1);
    // The Deployment stays the source of truth: its own pod comes up, then the claimed pod goes.
    const pods = await waitFor("hello's own pod", async () => {
      const p = await functionPods(NS, "hello");
      return p.length === 1 ? p : undefined;
    });
    expect(pods[0]).toMatch(/^fn-hello-deploy-/);
    await waitFor(
      "the claimed pod to be retired",
      async () => ((await claimedPods(NS, "hello")).length === 0 ? true : undefined),
      { timeoutMs: 60_000, intervalMs: 250 },
    );

    const second = await invoke(pf.localPort, "/invoke/hello");
    expect(second.status).toBe(200);
    expect(second.body).toBe("hello from runner");
    expect(second.headers["x-faas-cold-start"]).toBeUndefined();
    expect(await functionPods(NS, "hello")).toEqual(pods);
    console.log(
      `walkthrough: first call ${first.ms.toFixed(0)} ms (${String(first.headers["server-timing"])}), warm call ${second.ms.toFixed(1)} ms`,
    );
    expect(second.ms).toBeLessThan(first.ms);
  });

  it("answers a burst of 500 at zero replicas with one specialization, one scale patch and one pod", async () => {
    await waitForPool(NS, "python", 1);
    const b = await burstFromZero(NS, "hello", 500, pf.localPort);
    expect(b.byStatus).toEqual({ 200: 500 });
    expect([...b.bodies]).toEqual(["hello from runner"]);
    expect(b.poolClaims).toBe(1);
    expect(b.scalePatches).toBe(1);
    expect(b.pods).toBe(1);
    console.log(
      `herd: 500 concurrent at zero → 500×200 in ${b.seconds.toFixed(1)} s, ${b.poolClaims} specialization, ${b.scalePatches} scale patch, ${b.pods} pod`,
    );
  });

  it("scales an idle function to zero and serves the next request cold", async () => {
    await applyFunction(
      NS,
      pythonFunction("idle", 'def handle(req):\n    return "still here"', { idleSeconds: 5 }),
      "idle",
    );
    expect((await invoke(pf.localPort, "/invoke/idle")).body).toBe("still here");
    await waitFor("idle's own pod", async () => ((await functionPods(NS, "idle")).length === 1 ? true : undefined));
    const t0 = performance.now();
    await waitFor(
      "idle to scale to zero",
      async () => ((await deploymentReplicas(NS, "idle")) === 0 ? true : undefined),
      {
        timeoutMs: 90_000,
      },
    );
    await waitFor("idle's pod to go", async () => ((await functionPods(NS, "idle")).length === 0 ? true : undefined));
    console.log(
      `scale to zero: replicas 0 after ${((performance.now() - t0) / 1000).toFixed(1)} s idle (idleSeconds 5)`,
    );
    const again = await invoke(pf.localPort, "/invoke/idle");
    expect(again.status).toBe(200);
    expect(again.body).toBe("still here");
    expect(again.headers["x-faas-cold-start"]).toBe("true");
  });

  it("does not scale to zero while a long request is in flight", async () => {
    await applyFunction(
      NS,
      pythonFunction("slow", 'import time\ndef handle(req):\n    time.sleep(15)\n    return "done"', {
        idleSeconds: 3,
        timeoutSeconds: 60,
      }),
      "slow",
    );
    const pending = invoke(pf.localPort, "/invoke/slow");
    await waitFor("slow's pod", async () => ((await functionPods(NS, "slow")).length === 1 ? true : undefined));
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      expect(await deploymentReplicas(NS, "slow")).toBe(1);
    }
    const r = await pending;
    expect(r.status).toBe(200);
    expect(r.body).toBe("done");
  });
});
