/**
 * Network isolation (ADR 0012): the operator's NetworkPolicies, enforced by
 * the cluster's kube-router, let only the gateway's pods reach function and
 * pool pods. From a throwaway pod in another namespace and from one in the
 * function's own namespace, the function pod's IP:port, its `fn-<name>`
 * Service and a pool pod's port are refused; the same probe reaches an
 * ordinary pod (so the probe works and pod-to-pod traffic as such is not
 * blocked), and through the gateway the call succeeds — from such a pod via
 * the gateway's Service, and from the host via a port-forward. The node itself
 * (kubelet probes, the API server, a gateway run on the host) still reaches
 * the function pod. Prints what was measured.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { httpGet, kubectl, kubectlJson, type PortForward, useTestNamespace, waitFor } from "./fixture.js";
import {
  applyFunction,
  deleteFunction,
  FUNCTION_LABEL,
  gatewayPortForward,
  idlePoolPods,
  installCrdAndGateway,
  invoke,
  type LocalOperator,
  pythonFunction,
  startLocalOperator,
  systemPodObjects,
  waitForPool,
} from "./support/platform.js";
import { blocked, type Probe, probe, proberYaml } from "./support/probe.js";

const NS = "default";
const FN = "iso-hello";
const other = useTestNamespace("netiso");
const localProber = `netiso-prober-${randomBytes(3).toString("hex")}`;

interface PodJson {
  metadata: { name: string; deletionTimestamp?: string };
  status?: { podIP?: string; conditions?: { type: string; status: string }[] };
}

async function readyFunctionPodIp(): Promise<string | undefined> {
  const pods = await kubectlJson<{ items: PodJson[] }>(["-n", NS, "get", "pods", "-l", `${FUNCTION_LABEL}=${FN}`]);
  const ready = pods.items.find(
    (p) =>
      !p.metadata.deletionTimestamp &&
      p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") === true,
  );
  return ready?.status?.podIP;
}

async function podIp(namespace: string, name: string): Promise<string> {
  const p = await kubectlJson<PodJson>(["-n", namespace, "get", "pod", name]);
  if (!p.status?.podIP) throw new Error(`pod ${namespace}/${name} has no IP`);
  return p.status.podIP;
}

async function clusterIp(namespace: string, svc: string): Promise<string> {
  const s = await kubectlJson<{ spec: { clusterIP: string } }>(["-n", namespace, "get", "service", svc]);
  return s.spec.clusterIP;
}

describe("network isolation of function and pool pods", () => {
  let operator: LocalOperator;
  let pf: PortForward;
  const measured: string[] = [];
  const targets = { fnPod: "", fnService: "", poolPod: "", gatewayService: "", localProber: "", otherProber: "" };
  const record = (from: string, what: string, p: Probe) => {
    const line = `${from.padEnd(28)} -> ${what.padEnd(36)} ${p.outcome} (${p.ms} ms)`;
    measured.push(line);
    console.log(`[netiso] ${line}`);
  };

  beforeAll(async () => {
    await installCrdAndGateway();
    await deleteFunction(NS, FN);
    operator = await startLocalOperator(NS);
    pf = await gatewayPortForward();
    await kubectl(["-n", NS, "apply", "-f", "-"], { input: proberYaml(localProber) });
    await other.apply(proberYaml("prober"));
    await applyFunction(
      NS,
      pythonFunction(FN, 'def handle(req):\n    return "isolated hello"', { minReplicas: 1 }),
      FN,
    );
    await waitFor("the operator's NetworkPolicies", async () => {
      const r = await kubectl(["-n", NS, "get", "networkpolicy", "faas-functions-ingress", "faas-pool-ingress"], {
        allowFailure: true,
      });
      return r.code === 0 ? true : undefined;
    });
    targets.fnPod = await waitFor(`a ready pod of ${FN}`, readyFunctionPodIp, { timeoutMs: 180_000 });
    targets.fnService = await clusterIp(NS, `fn-${FN}`);
    targets.gatewayService = await clusterIp("faas-system", "faas-gateway");
    await waitForPool(NS, "python", 1, 180_000);
    const [pool] = await idlePoolPods(NS, "python");
    targets.poolPod = await podIp(NS, pool ?? "");
    await kubectl(["-n", NS, "wait", "--for=condition=Ready", `pod/${localProber}`, "--timeout=120s"], {
      timeoutMs: 150_000,
    });
    await other.kubectl(["wait", "--for=condition=Ready", "pod/prober", "--timeout=120s"], { timeoutMs: 150_000 });
    targets.localProber = await podIp(NS, localProber);
    targets.otherProber = await podIp(other.name, "prober");
    console.log(`[netiso] targets: ${JSON.stringify(targets)}`);
    // The engine programs a new pod's chains a moment after the pod starts: wait
    // until the function pod is refused from the other namespace once.
    const t0 = Date.now();
    await waitFor(
      "the policy to be enforced on the function pod",
      async () => (blocked(await probe(other.name, "prober", targets.fnPod, 8080)) ? true : undefined),
      { timeoutMs: 60_000 },
    );
    console.log(`[netiso] enforced ${Date.now() - t0} ms after the pods were ready`);
  });

  afterAll(async () => {
    pf?.close();
    await kubectl(["-n", NS, "delete", "pod", localProber, "--ignore-not-found", "--wait=false"], {
      allowFailure: true,
    });
    await deleteFunction(NS, FN).catch(() => {});
    await operator?.stop();
    console.log(`[netiso] measured:\n  ${measured.join("\n  ")}`);
  });

  for (const [from, fromNs, pod] of [
    ["a pod in another namespace", () => other.name, () => "prober"],
    ["a pod in the function's namespace", () => NS, () => localProber],
  ] as const) {
    it(`from ${from}: the function pod, its Service and a pool pod are refused; the gateway serves`, async () => {
      const run = (host: string, port: number, what: string, path?: string) =>
        probe(fromNs(), pod(), host, port, path).then((p) => {
          record(`${fromNs()}/${pod()}`, what, p);
          return p;
        });
      expect(blocked(await run(targets.fnPod, 8080, `function pod ${targets.fnPod}:8080`))).toBe(true);
      expect(blocked(await run(targets.fnService, 8080, `Service fn-${FN} ${targets.fnService}:8080`))).toBe(true);
      expect(blocked(await run(targets.poolPod, 8080, `pool pod ${targets.poolPod}:8080`))).toBe(true);
      // The same probe reaches an unselected pod: nothing else is in the way.
      const peer = fromNs() === NS ? targets.otherProber : targets.localProber;
      expect((await run(peer, 8080, `ordinary pod ${peer}:8080`, "/")).outcome).toMatch(/^http HTTP\/1\.\d 200/);
      // Through the gateway (its Service, kube-proxy, a gateway pod) the call succeeds.
      const gw = await run(targets.gatewayService, 8000, `gateway ${targets.gatewayService}:8000`, `/invoke/${FN}`);
      expect(gw.outcome).toMatch(/^http HTTP\/1\.1 200/);
    });
  }

  it("the gateway's /metrics: not behind its Service; its port admits only labelled namespaces and the node", async () => {
    const pods = await systemPodObjects<PodJson>("faas-gateway");
    const gatewayPod = pods.find((p) => !p.metadata.deletionTimestamp && p.status?.podIP)?.status?.podIP as string;
    const run = (ns: string, podName: string, host: string, port: number, what: string, path?: string) =>
      probe(ns, podName, host, port, path).then((p) => {
        record(`${ns}/${podName}`, what, p);
        return p;
      });
    // The Service is for clients: /metrics there is a 404.
    const viaService = await run(
      other.name,
      "prober",
      targets.gatewayService,
      8000,
      "gateway Service /metrics",
      "/metrics",
    );
    expect(viaService.outcome).toMatch(/^http HTTP\/1\.1 404/);
    // The metrics port itself: refused to pods of unlabelled namespaces.
    expect(blocked(await run(other.name, "prober", gatewayPod, 9090, `gateway pod ${gatewayPod}:9090`))).toBe(true);
    expect(blocked(await run(NS, localProber, gatewayPod, 9090, `gateway pod ${gatewayPod}:9090`))).toBe(true);
    // The node (the API server's proxy, a scraper on the host) gets the figures.
    const fromNode = await httpGet(`http://${gatewayPod}:9090/metrics`);
    expect(fromNode.status).toBe(200);
    expect(fromNode.body).toContain("faas_requests_total");
    measured.push(`host -> gateway pod ${gatewayPod}:9090/metrics: ${fromNode.status}`);
    // A monitoring namespace, labelled so, is let in.
    await kubectl(["label", "namespace", other.name, "faas.example.com/metrics=allowed"]);
    const allowed = await waitFor(
      "a labelled namespace to reach the metrics port",
      async () => {
        const p = await probe(other.name, "prober", gatewayPod, 9090, "/metrics");
        return /^http HTTP\/1\.1 200/.test(p.outcome) ? p : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 500 },
    );
    record(`${other.name}/prober (labelled)`, `gateway pod ${gatewayPod}:9090/metrics`, allowed);
  });

  it("through the gateway from the host (port-forward), the function answers", async () => {
    const r = await invoke(pf.localPort, `/invoke/${FN}`);
    measured.push(`host -> gateway port-forward /invoke/${FN}: ${r.status} ${JSON.stringify(r.body)}`);
    expect(r.status).toBe(200);
    expect(r.body).toBe("isolated hello");
  });

  it("the node itself still reaches the function pod (kubelet probes, the API server, a gateway on the host)", async () => {
    const r = await httpGet(`http://${targets.fnPod}:8080/invoke`);
    measured.push(`host -> function pod ${targets.fnPod}:8080/invoke: ${r.status} ${JSON.stringify(r.body)}`);
    expect(r.status).toBe(200);
    expect(r.body).toBe("isolated hello");
  });
});
