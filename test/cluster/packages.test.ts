/**
 * Packaged functions on the cluster (docs/packages.md, ADR 0016/0017): the CLI
 * builds each directory (manylinux wheels for the runner image; npm ci),
 * pushes it to the platform's registry through a port-forward and applies a
 * Function naming it by digest. From zero, a warm-pool pod pulls the package at
 * specialization and serves the first call; the Deployment's own pod pulls it at
 * start. Cold starts are sampled on fresh Functions naming the same package.
 * A digest the registry does not have shows in the Function's status.
 */
import { cpSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { faas as faasIn, type Run } from "../support/cli.js";
import { kubeconfigPath, kubectl, kubectlJson, type PortForward, repoRoot, waitFor } from "./fixture.js";
import {
  deleteFunction,
  functionPods,
  gatewayPortForward,
  installCrdAndGateway,
  invoke,
  type LocalOperator,
  startLocalOperator,
  waitForPool,
} from "./support/platform.js";

const NS = "default";
const dataDir = mkdtempSync(join(tmpdir(), "faas-pkg-cluster-"));
const src = join(dataDir, "src");
cpSync(join(repoRoot, "test/fixtures/packages"), src, { recursive: true });
const CLUSTER = ["--kubeconfig", kubeconfigPath, "--context", "faas"];
const SAMPLES = 10;

const CASES = [
  {
    name: "pkg-slug",
    runtime: "python",
    dir: "py-pure",
    query: `?title=${encodeURIComponent("Grüße aus Köln")}`,
    want: { slug: "grusse-aus-koln", greeting: "HELLO FROM A PACKAGE!" },
  },
  {
    name: "pkg-orjson",
    runtime: "python",
    dir: "py-orjson",
    query: "",
    want: { compiled: true, orjson: "3.10.18", numbers: [1, 2, 3] },
  },
  {
    name: "pkg-zod",
    runtime: "nodejs",
    dir: "node-lock",
    query: "?wait=3s",
    want: { greeting: "Hello From A Package", waitMs: 3000 },
  },
] as const;

const created: string[] = [];

function faas(...args: string[]): Promise<Run> {
  return faasIn(dataDir, [...CLUSTER, ...args]);
}

interface FunctionObj {
  spec: { package?: { digest: string; registry?: string; repository?: string } };
  status?: { conditions?: { type: string; status: string; reason?: string; message?: string }[] };
}

const getFunction = (name: string) => kubectlJson<FunctionObj>(["-n", NS, "get", "function", name]);

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] as number;
}

function serverTiming(h: string | string[] | undefined): string {
  return (Array.isArray(h) ? h.join(",") : (h ?? "")).replace(/\s+/g, " ");
}

describe("packaged functions on the cluster", () => {
  let operator: LocalOperator;
  let gw: PortForward;

  beforeAll(async () => {
    await installCrdAndGateway();
    await kubectl(["apply", "-f", join(repoRoot, "deploy/registry.yaml")]);
    await kubectl(["-n", "faas-system", "rollout", "status", "deployment/faas-registry", "--timeout=120s"], {
      timeoutMs: 130_000,
    });
    for (const c of CASES) await deleteFunction(NS, c.name);
    operator = await startLocalOperator(NS);
    gw = await gatewayPortForward();
  }, 300_000);

  afterAll(async () => {
    for (const name of [...CASES.map((c) => c.name), ...created]) await deleteFunction(NS, name).catch(() => {});
    gw?.close();
    await operator?.stop();
  }, 300_000);

  it.each(CASES)(
    "$dir: faas deploy builds and pushes it; from zero a pool pod pulls it and serves the first call",
    async (c) => {
      await waitForPool(NS, c.runtime, 1);
      const deployed = await faas("deploy", "--name", c.name, "--runtime", c.runtime, "--code", join(src, c.dir));
      expect(deployed.code, deployed.stderr).toBe(0);
      expect(deployed.stderr).toContain("pushing to http://faas-registry.faas-system.svc:5000/default/");
      const fn = await getFunction(c.name);
      expect(fn.spec.package).toMatchObject({
        digest: expect.stringMatching(/^sha256:[a-f0-9]{64}$/),
        registry: "http://faas-registry.faas-system.svc:5000",
        repository: `default/${c.name}`,
      });
      const res = await invoke(gw.localPort, `/invoke/${c.name}${c.query}`);
      expect(res.status, res.body).toBe(200);
      expect(res.headers["x-faas-cold-start"]).toBe("true");
      expect(JSON.parse(res.body)).toEqual(c.want);
      console.log(
        `${c.dir}: first call from zero ${res.ms.toFixed(0)} ms (${serverTiming(res.headers["server-timing"])})`,
      );
      // The Deployment's own pod pulls the package at start and becomes ready.
      await waitFor(
        `a ready pod of fn-${c.name}-deploy`,
        async () => {
          const r = await kubectl(
            ["-n", NS, "get", "deployment", `fn-${c.name}-deploy`, "-o", "jsonpath={.status.readyReplicas}"],
            { allowFailure: true },
          );
          return Number(r.stdout || 0) >= 1 ? true : undefined;
        },
        { timeoutMs: 120_000, intervalMs: 500 },
      );
      expect((await functionPods(NS, c.name)).length).toBeGreaterThanOrEqual(1);
    },
    300_000,
  );

  it("a second function with the same dependencies mounts their layer from the first one's repository", async () => {
    const name = "pkg-orjson-twin";
    created.push(name);
    await waitForPool(NS, "python", 1);
    const deployed = await faas("deploy", "--name", name, "--runtime", "python", "--code", join(src, "py-orjson"));
    expect(deployed.code, deployed.stderr).toBe(0);
    // The dependency layer is not sent again: the registry links it from default/pkg-orjson.
    expect(deployed.stderr).toMatch(/mounted [0-9a-f]{12} \([\d.]+ MiB\) from default\/pkg-orjson/);
    const res = await invoke(gw.localPort, `/invoke/${name}`);
    expect(res.status, res.body).toBe(200);
    expect(JSON.parse(res.body)).toMatchObject({ compiled: true, orjson: "3.10.18" });
  }, 300_000);

  it("--registry names another registry: the CLI pushes there directly and pods pull from that URL", async () => {
    // A registry the host and the pods both reach at one address: the platform's own, by its ClusterIP.
    const ip = (
      await kubectl(["-n", "faas-system", "get", "svc", "faas-registry", "-o", "jsonpath={.spec.clusterIP}"])
    ).stdout.trim();
    expect(ip).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    const url = `http://${ip}:5000`;
    const name = "pkg-own-registry";
    created.push(name);
    await waitForPool(NS, "python", 1);
    const deployed = await faas(
      "deploy",
      "--name",
      name,
      "--runtime",
      "python",
      "--code",
      join(src, "py-orjson"),
      "--registry",
      url,
    );
    expect(deployed.code, deployed.stderr).toBe(0);
    expect(deployed.stderr).toContain(`pushing to ${url}/default/${name}`);
    expect((await getFunction(name)).spec.package).toMatchObject({ registry: url, repository: `default/${name}` });
    const res = await invoke(gw.localPort, `/invoke/${name}`);
    expect(res.status, res.body).toBe(200);
    expect(JSON.parse(res.body)).toMatchObject({ compiled: true });
  }, 300_000);

  it("cold starts from zero on fresh Functions naming each package", async () => {
    const lines: string[] = [];
    for (const c of CASES) {
      const pkg = (await getFunction(c.name)).spec.package;
      const times: number[] = [];
      const timings: string[] = [];
      for (let i = 0; i < SAMPLES; i++) {
        const name = `${c.name}-c${i}`;
        created.push(name);
        await waitForPool(NS, c.runtime, 1);
        // A settled pool: the refill's pod start is not what is measured.
        await new Promise((r) => setTimeout(r, 1000));
        const yaml = JSON.stringify({
          apiVersion: "faas.example.com/v1",
          kind: "Function",
          metadata: { name, namespace: NS },
          spec: { runtime: c.runtime, handler: "main.handle", package: pkg, minReplicas: 0, maxReplicas: 1 },
        });
        await kubectl(["apply", "-f", "-"], { input: yaml });
        // 404 until the gateways' watch brings the Function; the first other answer is the cold start.
        const res = await waitFor(
          `gateway to know ${name}`,
          async () => {
            const r = await invoke(gw.localPort, `/invoke/${name}${c.query}`);
            return r.status === 404 ? undefined : r;
          },
          { timeoutMs: 30_000, intervalMs: 20 },
        );
        expect(res.status, res.body).toBe(200);
        expect(JSON.parse(res.body)).toEqual(c.want);
        times.push(res.ms);
        timings.push(serverTiming(res.headers["server-timing"]));
        await deleteFunction(NS, name);
      }
      lines.push(
        `${c.dir} (${c.runtime}): ${SAMPLES} cold starts from zero, p50 ${quantile(times, 0.5).toFixed(0)} ms, p95 ${quantile(times, 0.95).toFixed(0)} ms; e.g. ${timings[Math.floor(SAMPLES / 2)]}`,
      );
    }
    console.log(lines.join("\n"));
  }, 900_000);

  it("a digest the registry does not have: the Function's status says the package cannot be pulled", async () => {
    const name = "pkg-missing";
    created.push(name);
    const yaml = JSON.stringify({
      apiVersion: "faas.example.com/v1",
      kind: "Function",
      metadata: { name, namespace: NS },
      spec: {
        runtime: "python",
        package: {
          digest: `sha256:${"e".repeat(64)}`,
          registry: "http://faas-registry.faas-system.svc:5000",
          repository: "default/pkg-missing",
        },
        minReplicas: 1,
      },
    });
    await kubectl(["apply", "-f", "-"], { input: yaml });
    const ready = await waitFor(
      "the status to name the missing package",
      async () => {
        const c = (await getFunction(name)).status?.conditions?.find((x) => x.type === "Ready");
        return c?.status === "False" && /package sha256:e{8}/.test(c.message ?? "") ? c : undefined;
      },
      { timeoutMs: 180_000, intervalMs: 1000 },
    );
    expect(ready.reason).toBe("CrashLoop");
    expect(ready.message).toMatch(/404|MANIFEST_UNKNOWN|not found/i);
    console.log(`missing package status: ${ready.reason}: ${ready.message}`);
  }, 240_000);
});
