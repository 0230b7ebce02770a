/**
 * A warm pool pod serves a function that takes env from a Secret and a
 * ConfigMap (ADR 0013): the operator grants the in-cluster gateway `get` on
 * exactly those objects, by name, and the gateway sends their values in the
 * specialization. A function that mounts a Secret as files still takes the
 * Deployment path. Traffic goes to the gateway Service's ClusterIP.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kubectl, kubectlJson, waitFor } from "./fixture.js";
import {
  applyFunction,
  deleteFunction,
  gatewayMetric,
  installCrdAndGateway,
  type LocalOperator,
  startLocalOperator,
  systemPodObjects,
  waitForPool,
} from "./support/platform.js";

const NS = "default";
const GATEWAY_SA = "system:serviceaccount:faas-system:faas-gateway";
const secretValue = `pool-${randomBytes(6).toString("hex")}`;

const ENV_FN = `apiVersion: faas.example.com/v1
kind: Function
metadata:
  name: pool-ref-env
spec:
  runtime: python
  handler: main.handle
  env:
    - name: DB_PASSWORD
      valueFrom:
        secretKeyRef: {name: pool-ref-db, key: password}
    - name: GREETING
      value: hello
  envFrom:
    - configMapRef: {name: pool-ref-settings}
  code: |
    import os
    def handle(req):
        return {"password": os.environ.get("DB_PASSWORD"), "mode": os.environ.get("MODE"),
                "greeting": os.environ.get("GREETING"), "pod": os.environ.get("HOSTNAME")}
`;

const MOUNT_FN = `apiVersion: faas.example.com/v1
kind: Function
metadata:
  name: pool-ref-mount
spec:
  runtime: python
  handler: main.handle
  secrets:
    - name: pool-ref-db
      mountPath: /etc/secrets/db
  code: |
    def handle(req):
        with open("/etc/secrets/db/password") as f:
            return f.read()
`;

function call(host: string, path: string): Promise<{ status: number; body: string; headers: Headers; ms: number }> {
  const t0 = performance.now();
  return fetch(`http://${host}:8000${path}`, { signal: AbortSignal.timeout(120_000) }).then(async (r) => ({
    status: r.status,
    body: await r.text(),
    headers: r.headers,
    ms: performance.now() - t0,
  }));
}

async function canI(verb: string, what: string): Promise<string> {
  const r = await kubectl(["auth", "can-i", verb, what, "-n", NS, `--as=${GATEWAY_SA}`], { allowFailure: true });
  return r.stdout.trim();
}

describe("warm pool and env from Secrets and ConfigMaps", () => {
  let operator: LocalOperator;
  let gatewayIp: string;

  beforeAll(async () => {
    await installCrdAndGateway();
    for (const fn of ["pool-ref-env", "pool-ref-mount"]) await deleteFunction(NS, fn);
    await kubectl(["-n", NS, "delete", "secret,configmap", "pool-ref-db", "pool-ref-settings", "--ignore-not-found"]);
    await kubectl(["-n", NS, "create", "secret", "generic", "pool-ref-db", `--from-literal=password=${secretValue}`]);
    await kubectl(["-n", NS, "create", "configmap", "pool-ref-settings", "--from-literal=MODE=blue"]);
    operator = await startLocalOperator(NS, { FAAS_POOL_SIZE_NODEJS: "0" });
    const svc = await kubectlJson<{ spec: { clusterIP: string } }>(["-n", "faas-system", "get", "svc", "faas-gateway"]);
    gatewayIp = svc.spec.clusterIP;
  });
  afterAll(async () => {
    for (const fn of ["pool-ref-env", "pool-ref-mount"]) await deleteFunction(NS, fn).catch(() => {});
    await kubectl(["-n", NS, "delete", "secret,configmap", "pool-ref-db", "pool-ref-settings", "--ignore-not-found"]);
    await operator?.stop();
  });

  it("the operator grants the gateway `get` on exactly the referenced objects, by name", async () => {
    expect(await canI("get", "secret/pool-ref-db")).toBe("no");
    await applyFunction(NS, ENV_FN, "pool-ref-env");
    await waitFor("the gateway may get Secret pool-ref-db", async () =>
      (await canI("get", "secret/pool-ref-db")) === "yes" ? true : undefined,
    );
    const access = {
      secret: await canI("get", "secret/pool-ref-db"),
      configMap: await canI("get", "configmap/pool-ref-settings"),
      otherSecret: await canI("get", "secret/faas-pool-token-not-this-one"),
      listSecrets: await canI("list", "secrets"),
      watchSecrets: await canI("watch", "secrets"),
    };
    console.log(`pool-references: gateway access ${JSON.stringify(access)}`);
    expect(access).toEqual({
      secret: "yes",
      configMap: "yes",
      otherSecret: "no",
      listSecrets: "no",
      watchSecrets: "no",
    });
  });

  it("a cold start is served by a pool pod specialized with the values", async () => {
    await waitForPool(NS, "python", 1, 180_000);
    const fallbacksBefore = await gatewayMetric("faas_pool_fallbacks_total", { reason: "references" });
    const claimsBefore = await gatewayMetric("faas_pool_claims_total", { result: "claimed" });
    const cold = await call(gatewayIp, "/invoke/pool-ref-env");
    expect(cold.status, cold.body).toBe(200);
    const body = JSON.parse(cold.body) as { password: string; mode: string; greeting: string; pod: string };
    expect({ password: body.password, mode: body.mode, greeting: body.greeting }).toEqual({
      password: secretValue,
      mode: "blue",
      greeting: "hello",
    });
    // A pool pod answered (not the Deployment's): its name is the pool's.
    expect(body.pod).toMatch(/^faas-pool-python-/);
    expect(cold.headers.get("server-timing") ?? "").toMatch(/specialize;dur=/);
    expect((await gatewayMetric("faas_pool_claims_total", { result: "claimed" })) - claimsBefore).toBe(1);
    expect(await gatewayMetric("faas_pool_fallbacks_total", { reason: "references" })).toBe(fallbacksBefore);
    console.log(
      `pool-references: cold start from the pool ${cold.ms.toFixed(0)} ms (${cold.headers.get("server-timing")}), served by ${body.pod}`,
    );
    // No value in the gateways' logs.
    const pods = await systemPodObjects("faas-gateway");
    for (const p of pods) {
      const logs = await kubectl(["-n", "faas-system", "logs", p.metadata.name]);
      expect(logs.stdout).not.toContain(secretValue);
    }
  });

  it("a function that mounts a Secret takes the Deployment path, counted", async () => {
    const before = await gatewayMetric("faas_pool_fallbacks_total", { reason: "mounts" });
    await applyFunction(NS, MOUNT_FN, "pool-ref-mount");
    const cold = await call(gatewayIp, "/invoke/pool-ref-mount");
    expect({ status: cold.status, body: cold.body }).toEqual({ status: 200, body: secretValue });
    expect((await gatewayMetric("faas_pool_fallbacks_total", { reason: "mounts" })) - before).toBe(1);
    console.log(`pool-references: a function with a mount, cold via the Deployment ${cold.ms.toFixed(0)} ms`);
  });

  it("the grant goes with the last function that needs it", async () => {
    await deleteFunction(NS, "pool-ref-env");
    await waitFor("the gateway's get on Secret pool-ref-db revoked", async () =>
      (await canI("get", "secret/pool-ref-db")) === "no" ? true : undefined,
    );
  });
});
