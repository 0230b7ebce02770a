/**
 * The original design's HPA scenario: cpu-test (minReplicas 1, maxReplicas 5)
 * under `faas stress` scales out past one pod, then back to one after the load.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kubectl, kubectlJson, type PortForward, repoRoot, waitFor } from "./fixture.js";
import {
  applyFunction,
  deleteFunction,
  functionPods,
  gatewayPortForward,
  installCrdAndGateway,
  invoke,
  type LocalOperator,
  startLocalOperator,
} from "./support/platform.js";

const NS = "default";

interface Hpa {
  spec: { minReplicas: number; maxReplicas: number };
  status: {
    currentReplicas?: number;
    desiredReplicas?: number;
    currentMetrics?: { resource?: { current?: { averageUtilization?: number } } }[];
  };
}

describe("HPA scenario: cpu-test under faas stress", () => {
  let operator: LocalOperator;
  let pf: PortForward;

  beforeAll(async () => {
    await installCrdAndGateway();
    await deleteFunction(NS, "cpu-test");
    // A short scale-down window so the test sees the way back to one replica.
    operator = await startLocalOperator(NS, { FAAS_HPA_SCALE_DOWN_STABILIZATION_SECONDS: "15" });
    pf = await gatewayPortForward();
  });
  afterAll(async () => {
    pf?.close();
    await deleteFunction(NS, "cpu-test").catch(() => {});
    await operator?.stop();
  });

  it("scales 1 → more under load and back to 1 afterwards", async () => {
    await applyFunction(NS, readFileSync(join(repoRoot, "function-cpu-test.yaml"), "utf8"), "cpu-test");
    const hpa = await waitFor("HPA fn-cpu-test", async () => {
      const r = await kubectl(["-n", NS, "get", "hpa", "fn-cpu-test", "-o", "json"], { allowFailure: true });
      return r.code === 0 ? (JSON.parse(r.stdout) as Hpa) : undefined;
    });
    expect(hpa.spec).toMatchObject({ minReplicas: 1, maxReplicas: 5 });
    await waitFor("cpu-test's first pod ready", async () => {
      const r = await invoke(pf.localPort, "/invoke/cpu-test?rounds=10");
      return r.status === 200 ? true : undefined;
    });
    expect(await functionPods(NS, "cpu-test")).toHaveLength(1);

    const stress = spawn(
      process.execPath,
      [
        join(repoRoot, "packages/cli/dist/main.js"),
        "stress",
        "cpu-test",
        "--gateway",
        `http://127.0.0.1:${pf.localPort}`,
        "--duration",
        "150s",
        "-c",
        "6",
        "--json",
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let out = "";
    stress.stdout.on("data", (d: Buffer) => (out += d.toString()));
    const stressDone = new Promise<void>((r) => stress.once("exit", () => r()));
    let peakReplicas = 1;
    let peakUtilization = 0;
    try {
      await waitFor(
        "the HPA to scale out",
        async () => {
          const h = await kubectlJson<Hpa>(["-n", NS, "get", "hpa", "fn-cpu-test"]);
          peakReplicas = Math.max(peakReplicas, h.status.currentReplicas ?? 0, h.status.desiredReplicas ?? 0);
          peakUtilization = Math.max(
            peakUtilization,
            h.status.currentMetrics?.[0]?.resource?.current?.averageUtilization ?? 0,
          );
          return (h.status.currentReplicas ?? 0) > 1 && peakUtilization > 50 ? true : undefined;
        },
        { timeoutMs: 140_000, intervalMs: 2000 },
      );
      // Let it grow a little further while the load lasts.
      for (let i = 0; i < 10; i++) {
        await new Promise((r) => setTimeout(r, 2000));
        const h = await kubectlJson<Hpa>(["-n", NS, "get", "hpa", "fn-cpu-test"]);
        peakReplicas = Math.max(peakReplicas, h.status.currentReplicas ?? 0);
      }
    } finally {
      stress.kill("SIGINT");
      await stressDone;
    }
    const summary = JSON.parse(out) as { requests: number; errors: number; rps: number };
    console.log(
      `HPA: peak utilization ${peakUtilization}% of request, peak replicas ${peakReplicas}; stress ${summary.requests} requests, ${summary.errors} errors`,
    );
    expect(peakUtilization).toBeGreaterThan(50);
    expect(peakReplicas).toBeGreaterThan(1);
    expect(peakReplicas).toBeLessThanOrEqual(5);
    expect(summary.requests).toBeGreaterThan(0);
    expect(summary.errors).toBe(0);

    const t0 = performance.now();
    await waitFor(
      "the HPA to scale back to 1",
      async () => {
        const h = await kubectlJson<Hpa>(["-n", NS, "get", "hpa", "fn-cpu-test"]);
        return h.status.currentReplicas === 1 ? true : undefined;
      },
      { timeoutMs: 240_000, intervalMs: 3000 },
    );
    console.log(`HPA: back to 1 replica ${((performance.now() - t0) / 1000).toFixed(0)} s after the load`);
  });
});
