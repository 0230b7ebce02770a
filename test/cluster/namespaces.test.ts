/**
 * One gateway, Functions of two namespaces: `default` and a test namespace,
 * each with a function of the same name. The in-cluster gateway is configured
 * for both (`FAAS_FUNCTION_NAMESPACES`, a RoleBinding in the second), and put
 * back as `gateway-deploy.yaml` has it afterwards. Traffic goes to the gateway
 * Service's ClusterIP from this host.
 */
import { Agent, request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kubectl, kubectlJson, useTestNamespace, waitFor } from "./fixture.js";
import {
  applyFunction,
  deleteFunction,
  functionPods,
  installCrdAndGateway,
  type LocalOperator,
  pythonFunction,
  startLocalOperator,
} from "./support/platform.js";

const FN = "same-name";
const other = useTestNamespace("ns");
const agent = new Agent({ keepAlive: true, maxSockets: 4000 });

interface Hit {
  status: number;
  body: string;
  ms: number;
}

function hit(host: string, path: string, headers: Record<string, string> = {}): Promise<Hit> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const req = request({ host, port: 8000, path, agent, headers }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (d: string) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, ms: performance.now() - t0 }));
      res.on("error", () => resolve({ status: 0, body, ms: performance.now() - t0 }));
    });
    req.setTimeout(120_000, () => req.destroy(new Error("no answer")));
    req.on("error", (err) => resolve({ status: 0, body: err.message, ms: performance.now() - t0 }));
    req.end();
  });
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? Number.NaN;
}

async function setGatewayNamespaces(value: string | undefined): Promise<void> {
  await kubectl([
    "-n",
    "faas-system",
    "set",
    "env",
    "deployment/faas-gateway",
    value === undefined ? "FAAS_FUNCTION_NAMESPACES-" : `FAAS_FUNCTION_NAMESPACES=${value}`,
  ]);
  await kubectl(["-n", "faas-system", "rollout", "status", "deployment/faas-gateway", "--timeout=240s"], {
    timeoutMs: 250_000,
  });
}

describe("one gateway, two namespaces", () => {
  const operators: LocalOperator[] = [];
  let gatewayIp: string;

  beforeAll(async () => {
    await installCrdAndGateway();
    await deleteFunction("default", FN);
    // The gateway reads the second namespace as it reads default: the same ClusterRole, bound there.
    await other.apply(`apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: faas-gateway
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: faas-gateway}
subjects: [{kind: ServiceAccount, name: faas-gateway, namespace: faas-system}]
`);
    await setGatewayNamespaces(`default,${other.name}`);
    // No warm pool: the burst below is a Deployment-path cold start of 2,000 parked requests.
    operators.push(await startLocalOperator("default", { FAAS_POOL_SIZE: "0" }));
    operators.push(await startLocalOperator(other.name, { FAAS_POOL_SIZE: "0" }));
    const svc = await kubectlJson<{ spec: { clusterIP: string } }>(["-n", "faas-system", "get", "svc", "faas-gateway"]);
    gatewayIp = svc.spec.clusterIP;
    await applyFunction(
      "default",
      pythonFunction(FN, 'def handle(req):\n    return "from default"', { minReplicas: 1 }),
      FN,
    );
    await applyFunction(other.name, pythonFunction(FN, `def handle(req):\n    return "from ${other.name}"`), FN);
  });
  afterAll(async () => {
    await deleteFunction("default", FN).catch(() => {});
    for (const o of operators) await o.stop();
    await setGatewayNamespaces(undefined);
    agent.destroy();
  });

  it("each namespace's function of the same name answers for itself", async () => {
    const mine = await waitFor("the default namespace's function", async () => {
      const h = await hit(gatewayIp, `/invoke/${FN}`);
      return h.status === 200 ? h : undefined;
    });
    expect(mine.body).toBe("from default");
    const theirs = await hit(gatewayIp, `/invoke/${other.name}/${FN}`);
    expect({ status: theirs.status, body: theirs.body }).toEqual({ status: 200, body: `from ${other.name}` });
    console.log(
      `namespaces: /invoke/${FN} → "${mine.body}"; /invoke/${other.name}/${FN} → "${theirs.body}" (cold, ${theirs.ms.toFixed(0)} ms)`,
    );
  });

  it("a burst of 2,000 from zero in one namespace does not push the other past its deadline", async () => {
    await kubectl(["-n", other.name, "scale", "deployment", `fn-${FN}-deploy`, "--replicas=0"]);
    await waitFor(`${FN} in ${other.name} at zero pods`, async () =>
      (await functionPods(other.name, FN)).length === 0 ? true : undefined,
    );
    await new Promise((r) => setTimeout(r, 1500));
    // The other namespace's function, asked all along with a 2 s deadline.
    const steady: Hit[] = [];
    let stop = false;
    const loops = Array.from({ length: 4 }, async () => {
      while (!stop) steady.push(await hit(gatewayIp, `/invoke/${FN}`, { "x-faas-deadline-ms": "2000" }));
    });
    await new Promise((r) => setTimeout(r, 500));
    const t0 = performance.now();
    const burst = await Promise.all(Array.from({ length: 2000 }, () => hit(gatewayIp, `/invoke/${other.name}/${FN}`)));
    const burstSeconds = (performance.now() - t0) / 1000;
    await new Promise((r) => setTimeout(r, 500));
    stop = true;
    await Promise.all(loops);
    const tally = (hs: Hit[]): Record<string, number> => {
      const out: Record<string, number> = {};
      for (const h of hs) out[h.status] = (out[h.status] ?? 0) + 1;
      return out;
    };
    const steadyMs = steady.map((h) => h.ms);
    console.log(
      `namespaces/burst: 2,000 requests to ${other.name}/${FN} from zero → ${JSON.stringify(tally(burst))} in ${burstSeconds.toFixed(1)} s; ` +
        `meanwhile ${steady.length} calls to default/${FN} with a 2 s deadline → ${JSON.stringify(tally(steady))}, ` +
        `p50 ${quantile(steadyMs, 0.5).toFixed(1)} ms, p99 ${quantile(steadyMs, 0.99).toFixed(1)} ms, max ${Math.max(...steadyMs).toFixed(0)} ms`,
    );
    expect(tally(burst)).toEqual({ 200: 2000 });
    expect(new Set(burst.map((h) => h.body))).toEqual(new Set([`from ${other.name}`]));
    expect(steady.length).toBeGreaterThan(50);
    expect(tally(steady)).toEqual({ 200: steady.length });
    expect(Math.max(...steadyMs)).toBeLessThan(2000);
  });
});
