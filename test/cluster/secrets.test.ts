/**
 * Secrets, config and per-function resources on the cluster (ADR 0013): a
 * function reads a Secret through an env var (valueFrom), a mounted file and a
 * ConfigMap through envFrom; rotating the Secret rolls it under load with no
 * failed request; the value is in no log, no platform object and no listing;
 * the warm pool is skipped for it (it mounts the Secret), with the reason counted; a function with
 * its own resources has them on its pods, and the API server refuses bad ones.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { faas } from "../support/cli.js";
import { httpGet, kubeconfigPath, kubectl, kubectlJson, useTestNamespace, waitFor } from "./fixture.js";
import {
  functionPods,
  installCrd,
  invoke,
  type LocalGateway,
  type LocalOperator,
  startLocalGateway,
  startLocalOperator,
} from "./support/platform.js";

const ns = useTestNamespace("secrets");

interface Pod {
  metadata: { name: string; deletionTimestamp?: string };
  spec: { containers: { resources?: { requests?: Record<string, string>; limits?: Record<string, string> } }[] };
  status?: { podIP?: string; conditions?: { type: string; status: string }[] };
}

async function readyPods(fn: string): Promise<Pod[]> {
  const list = await kubectlJson<{ items: Pod[] }>([
    "-n",
    ns.name,
    "get",
    "pods",
    "-l",
    `faas.example.com/function=${fn}`,
  ]);
  return list.items.filter(
    (p) =>
      !p.metadata.deletionTimestamp && p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
  );
}

const READER = `apiVersion: faas.example.com/v1
kind: Function
metadata:
  name: reader
spec:
  runtime: python
  handler: main.handle
  minReplicas: 0
  maxReplicas: 2
  idleSeconds: 600
  env:
    - name: GREETING
      value: hello
    - name: DB_PASSWORD
      valueFrom:
        secretKeyRef: {name: db, key: password}
  envFrom:
    - configMapRef: {name: settings}
  secrets:
    - name: db
      mountPath: /etc/secrets/db
  code: |
    import os
    def handle(req):
        with open("/etc/secrets/db/password") as f:
            from_file = f.read()
        return {"env": os.environ["DB_PASSWORD"], "file": from_file,
                "mode": os.environ.get("MODE"), "greeting": os.environ.get("GREETING"),
                "pod": os.environ.get("HOSTNAME")}
`;

const SIZED = `apiVersion: faas.example.com/v1
kind: Function
metadata:
  name: sized
spec:
  runtime: python
  minReplicas: 1
  maxReplicas: 3
  resources:
    requests: {cpu: 150m, memory: 80Mi}
    limits: {cpu: 700m, memory: 160Mi}
  code: |
    def handle(req):
        return "sized"
`;

function secretYaml(value: string): string {
  return `apiVersion: v1
kind: Secret
metadata:
  name: db
type: Opaque
stringData:
  password: ${value}
`;
}

describe("secrets and config", () => {
  let operator: LocalOperator;
  let gateway: LocalGateway;
  const v1 = `s3cr3t-one-${randomBytes(6).toString("hex")}`;
  const v2 = `s3cr3t-two-${randomBytes(6).toString("hex")}`;

  beforeAll(async () => {
    await installCrd();
    operator = await startLocalOperator(ns.name, { FAAS_POOL_SIZE: "0", FAAS_PRESTOP_SLEEP_SECONDS: "2" });
    gateway = await startLocalGateway(ns.name);
  });
  afterAll(async () => {
    await gateway?.stop();
    await operator?.stop();
  });

  it("reads a Secret through env and a mounted file, a ConfigMap through envFrom; skips the pool", async () => {
    await ns.apply(secretYaml(v1));
    await ns.kubectl(["create", "configmap", "settings", "--from-literal=MODE=blue"]);
    await ns.apply(READER);
    await waitFor("reader's Deployment", async () =>
      (await ns.kubectl(["get", "deployment", "fn-reader-deploy"], { allowFailure: true })).code === 0
        ? true
        : undefined,
    );
    const cold = await invoke(gateway.port, "/invoke/reader");
    expect(cold.status, cold.body).toBe(200);
    expect(JSON.parse(cold.body)).toMatchObject({ env: v1, file: v1, mode: "blue", greeting: "hello" });
    expect(cold.headers["x-faas-cold-start"]).toBe("true");
    // Not from the pool: the function mounts the Secret as files, which a pool pod has no volume for
    // (env alone would be served from the pool: test/cluster/pool-references.test.ts).
    expect(await gateway.metric("faas_pool_fallbacks_total", { reason: "mounts" })).toBe(1);
    console.log(
      `secrets: cold start via the Deployment path ${cold.ms.toFixed(0)} ms (${String(cold.headers["server-timing"])})`,
    );
  });

  it("rolls the function when the Secret changes, with no failed request under load", async () => {
    let stop = false;
    const replies: { status: number; body: string; at: number }[] = [];
    const load = Array.from({ length: 6 }, async () => {
      while (!stop) {
        const r = await invoke(gateway.port, "/invoke/reader").catch((err: Error) => ({
          status: 0,
          body: err.message,
          ms: 0,
          headers: {},
        }));
        replies.push({ status: r.status, body: r.body, at: Date.now() });
      }
    });
    const configHash = async (): Promise<string | undefined> =>
      (
        await kubectlJson<{ spec: { template: { metadata: { annotations?: Record<string, string> } } } }>([
          "-n",
          ns.name,
          "get",
          "deployment",
          "fn-reader-deploy",
        ])
      ).spec.template.metadata.annotations?.["faas.example.com/config-hash"];
    const rolledOut = async (): Promise<boolean> =>
      (
        await ns.kubectl(["rollout", "status", "deployment/fn-reader-deploy", "--timeout=1s"], {
          allowFailure: true,
        })
      ).code === 0;
    // A settled start: the first roll-out done, so the one measured is the Secret's.
    await waitFor("reader rolled out", async () => ((await rolledOut()) ? true : undefined), { timeoutMs: 120_000 });
    await new Promise((r) => setTimeout(r, 1_000));
    const hashBefore = await configHash();
    const podsBefore = (await readyPods("reader")).map((p) => p.metadata.name);
    const rotatedAt = Date.now();
    await ns.apply(secretYaml(v2));
    const doneAt = await waitFor(
      "the roll-out of the new Secret",
      async () => {
        if ((await configHash()) === hashBefore) return undefined;
        const pods = await readyPods("reader");
        if (pods.length === 0 || pods.some((p) => podsBefore.includes(p.metadata.name))) return undefined;
        return (await rolledOut()) ? Date.now() : undefined;
      },
      { timeoutMs: 180_000, intervalMs: 250 },
    );
    await new Promise((r) => setTimeout(r, 4_000));
    stop = true;
    await Promise.all(load);
    const failed = replies.filter((r) => r.status !== 200);
    const values = (r: { body: string }) => JSON.parse(r.body) as { env: string; file: string; pod: string };
    const seen = new Map<string, { n: number; first: number; last: number }>();
    for (const r of replies) {
      const v = r.status === 200 ? values(r) : { env: `status ${r.status}`, pod: "" };
      const k = `${v.pod} ${v.env === v1 ? "v1" : v.env === v2 ? "v2" : v.env}`;
      const e = seen.get(k) ?? { n: 0, first: r.at - rotatedAt, last: 0 };
      e.n++;
      e.last = r.at - rotatedAt;
      seen.set(k, e);
    }
    console.log(`secrets: pods before ${podsBefore.join(",")}; done at +${doneAt - rotatedAt} ms; answers`, seen);
    expect(failed).toEqual([]);
    // Env is fixed at a container's start: old pods answer v1, new ones v2 through both
    // env and file (the kubelet may refresh an old pod's mounted file in place meanwhile).
    expect(replies.filter((r) => podsBefore.includes(values(r).pod)).every((r) => values(r).env === v1)).toBe(true);
    const fresh = replies.filter((r) => !podsBefore.includes(values(r).pod));
    expect(fresh.length).toBeGreaterThan(0);
    expect(fresh.every((r) => values(r).env === v2 && values(r).file === v2)).toBe(true);
    // Once the roll-out is done (plus the gateways' routing update), only the new value.
    const late = replies.filter((r) => r.at > doneAt + 1_000 && values(r).env !== v2);
    expect(late).toEqual([]);
    for (const p of await readyPods("reader")) {
      const direct = await httpGet(`http://${p.status?.podIP}:8080/invoke`);
      expect(JSON.parse(direct.body)).toMatchObject({ env: v2, file: v2 });
    }
    console.log(
      `secrets: rotation under load: ${replies.length} requests, ${failed.length} failed, ` +
        `rolled in ${((doneAt - rotatedAt) / 1000).toFixed(1)} s`,
    );
  });

  it("shows the value in no log, listing or platform object", async () => {
    const leaks: string[] = [];
    const check = (what: string, text: string) => {
      if (text.includes(v1) || text.includes(v2)) leaks.push(what);
    };
    check("operator log", readFileSync(operator.logFile, "utf8"));
    check("gateway log", readFileSync(gateway.logFile, "utf8"));
    for (const pod of await functionPods(ns.name, "reader")) {
      check(`logs of ${pod}`, (await ns.kubectl(["logs", pod, "--all-containers"])).stdout);
    }
    check("kubectl get functions", (await ns.kubectl(["get", "functions", "-o", "wide"])).stdout);
    // `faas list` against the cluster, as a user runs it.
    const cliData = mkdtempSync(join(tmpdir(), "faas-secrets-cli-"));
    const listed = await faas(cliData, ["--kubeconfig", kubeconfigPath, "--context", "faas", "-n", ns.name, "list"]);
    expect(listed.stdout).toContain("reader");
    check("faas list", listed.stdout + listed.stderr);
    const listedJson = await faas(cliData, [
      "--kubeconfig",
      kubeconfigPath,
      "--context",
      "faas",
      "-n",
      ns.name,
      "list",
      "--json",
    ]);
    check("faas list --json", listedJson.stdout);
    check("the Function", (await ns.kubectl(["get", "function", "reader", "-o", "json"])).stdout);
    check(
      "code ConfigMaps",
      (await ns.kubectl(["get", "configmaps", "-l", "faas.example.com/function=reader", "-o", "json"])).stdout,
    );
    check("the Deployment", (await ns.kubectl(["get", "deployment", "fn-reader-deploy", "-o", "json"])).stdout);
    check("events", (await ns.kubectl(["get", "events", "-o", "json"])).stdout);
    expect(leaks).toEqual([]);
    // The operator read the Secret (its digest is on the pod template), not its value.
    const dep = await kubectlJson<{ spec: { template: { metadata: { annotations: Record<string, string> } } } }>([
      "-n",
      ns.name,
      "get",
      "deployment",
      "fn-reader-deploy",
    ]);
    expect(dep.spec.template.metadata.annotations["faas.example.com/config-hash"]).toMatch(/^[0-9a-f]{16}$/);
  });
});

describe("per-function resources", () => {
  let operator: LocalOperator;
  beforeAll(async () => {
    operator = await startLocalOperator(ns.name, { FAAS_POOL_SIZE: "0" });
  });
  afterAll(async () => {
    await operator?.stop();
  });

  it("puts a function's own requests and limits on its pods", async () => {
    await ns.apply(SIZED);
    const [pod] = await waitFor("a ready pod of sized", async () => {
      const pods = await readyPods("sized");
      return pods.length > 0 ? pods : undefined;
    });
    expect(pod?.spec.containers[0]?.resources).toEqual({
      // A pod without volumes has its /tmp in the writable layer, capped, reserving nothing (ADR 0018).
      requests: { cpu: "150m", memory: "80Mi", "ephemeral-storage": "0" },
      limits: { cpu: "700m", memory: "160Mi", "ephemeral-storage": "64Mi" },
    });
    const hpa = await kubectlJson<{ spec: { metrics: { resource: { target: { averageUtilization: number } } }[] } }>([
      "-n",
      ns.name,
      "get",
      "hpa",
      "fn-sized",
    ]);
    // The HPA's target is a share of this function's own CPU request.
    expect(hpa.spec.metrics[0]?.resource.target.averageUtilization).toBe(50);
    console.log(`resources: pod ${pod?.metadata.name} has ${JSON.stringify(pod?.spec.containers[0]?.resources)}`);
  });

  it("is refused by the API server when a request exceeds its limit or is not a quantity", async () => {
    const bad = (resources: string) =>
      kubectl(["-n", ns.name, "apply", "-f", "-"], {
        input: SIZED.replace("name: sized", "name: bad").replace(
          / {2}resources:\n(.*\n){2}/,
          `  resources:\n${resources}\n`,
        ),
        allowFailure: true,
      });
    const above = await bad("    requests: {memory: 2Gi}\n    limits: {memory: 512Mi}");
    expect(above.code).not.toBe(0);
    expect(above.stderr).toMatch(/spec.resources.requests.memory must be <= spec.resources.limits.memory/);
    const notQuantity = await bad("    limits: {cpu: two}");
    expect(notQuantity.code).not.toBe(0);
    expect(notQuantity.stderr).toMatch(/spec.resources.limits.cpu/);
  });
});
