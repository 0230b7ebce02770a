/**
 * The faas platform on the test cluster, as the README's walkthrough sets it
 * up: the CRD, the gateway from gateway-deploy.yaml, and the operator either
 * as a local process (like `faas operator`) or in the cluster (two replicas).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, mkdirSync } from "node:fs";
import { Agent, request } from "node:http";
import { join } from "node:path";
import { kubeconfigPath, kubectl, kubectlJson, type PortForward, portForward, repoRoot, waitFor } from "../fixture.js";

export const FUNCTION_LABEL = "faas.example.com/function";

export async function installCrdAndGateway(): Promise<void> {
  await kubectl(["apply", "-f", join(repoRoot, "crd.yaml")]);
  await kubectl(["wait", "--for=condition=Established", "crd/functions.faas.example.com", "--timeout=60s"]);
  await kubectl(["apply", "-f", join(repoRoot, "gateway-deploy.yaml")]);
  await kubectl(["-n", "faas-system", "rollout", "status", "deployment/faas-gateway", "--timeout=240s"], {
    timeoutMs: 250_000,
  });
}

export interface LocalOperator {
  process: ChildProcess;
  logFile: string;
  stop(): Promise<void>;
}

/** `node packages/operator/dist/main.js --namespace NS` against the test cluster's kubeconfig. */
export async function startLocalOperator(namespace: string, env: Record<string, string> = {}): Promise<LocalOperator> {
  mkdirSync(join(repoRoot, ".faas"), { recursive: true });
  const logFile = join(repoRoot, ".faas", `operator-${namespace}-${Date.now()}.log`);
  const out = createWriteStream(logFile);
  const child = spawn(
    process.execPath,
    [join(repoRoot, "packages/operator/dist/main.js"), "--namespace", namespace, "--kubeconfig", kubeconfigPath],
    {
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  child.stdout?.pipe(out);
  child.stderr?.pipe(out);
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  return {
    process: child,
    logFile,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(t);
    },
  };
}

export async function gatewayPortForward(): Promise<PortForward> {
  return portForward("faas-system", "svc/faas-gateway", 8000);
}

/**
 * Keep-alive, but idle sockets are dropped after 2 s: kubectl port-forward keeps
 * the local end of a connection open after the gateway (keep-alive timeout 5 s)
 * closed its end, and a request on it would see "socket hang up".
 */
export const agent = new Agent({ keepAlive: true, maxSockets: 1000, timeout: 2000 });

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  ms: number;
}

export function invoke(
  port: number,
  path: string,
  opts: { method?: string; body?: string; timeoutMs?: number } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = request({ host: "127.0.0.1", port, path, method: opts.method ?? "GET", agent }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (d: string) => (body += d));
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, ms: performance.now() - t0 }),
      );
      res.on("error", reject);
    });
    req.setTimeout(opts.timeoutMs ?? 120_000, () => req.destroy(new Error(`no answer for ${path}`)));
    req.on("error", reject);
    req.end(opts.body);
  });
}

interface PodList {
  items: { metadata: { name: string; deletionTimestamp?: string }; status?: { phase?: string } }[];
}

/** Pods of a function that are not being deleted. */
export async function functionPods(namespace: string, fn: string): Promise<string[]> {
  const pods = await kubectlJson<PodList>(["-n", namespace, "get", "pods", "-l", `${FUNCTION_LABEL}=${fn}`]);
  return pods.items.filter((p) => !p.metadata.deletionTimestamp).map((p) => p.metadata.name);
}

export async function deploymentReplicas(namespace: string, fn: string): Promise<number | undefined> {
  const r = await kubectl(
    ["-n", namespace, "get", "deployment", `fn-${fn}-deploy`, "-o", "jsonpath={.spec.replicas}"],
    {
      allowFailure: true,
    },
  );
  return r.code === 0 && r.stdout !== "" ? Number(r.stdout) : undefined;
}

/** Every pod of a faas-system component (`app.kubernetes.io/name`), terminating ones included, as kubectl gives them. */
export async function systemPodObjects<T = PodList["items"][number]>(app: string): Promise<T[]> {
  const pods = await kubectlJson<{ items: T[] }>([
    "-n",
    "faas-system",
    "get",
    "pods",
    "-l",
    `app.kubernetes.io/name=${app}`,
  ]);
  return pods.items;
}

/** Names of the running pods of a faas-system component (`app.kubernetes.io/name`). */
export async function systemPods(app: string): Promise<string[]> {
  return (await systemPodObjects(app))
    .filter((p) => p.status?.phase === "Running" && !p.metadata.deletionTimestamp)
    .map((p) => p.metadata.name);
}

/** Sum of one metric across every gateway pod, read through the API server's pod proxy. */
export async function gatewayMetric(name: string, labels: Record<string, string>): Promise<number> {
  let total = 0;
  for (const pod of await systemPods("faas-gateway")) {
    const { stdout } = await kubectl(["get", "--raw", `/api/v1/namespaces/faas-system/pods/${pod}:9090/proxy/metrics`]);
    for (const line of stdout.split("\n")) {
      if (!line.startsWith(`${name}{`)) continue;
      if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)))
        total += Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return total;
}

/** Applies a Function and waits until the operator has created its Deployment. */
export async function applyFunction(namespace: string, yaml: string, name: string): Promise<void> {
  await kubectl(["-n", namespace, "apply", "-f", "-"], { input: yaml });
  await waitFor(
    `deployment fn-${name}-deploy`,
    async () => ((await deploymentReplicas(namespace, name)) !== undefined ? true : undefined),
    {
      timeoutMs: 60_000,
    },
  );
}

export async function deleteFunction(namespace: string, name: string): Promise<void> {
  await kubectl(["-n", namespace, "delete", "function", name, "--ignore-not-found", "--wait=true", "--timeout=120s"], {
    timeoutMs: 130_000,
  });
  await waitFor(
    `pods of ${name} gone`,
    async () => ((await functionPods(namespace, name)).length === 0 ? true : undefined),
    {
      timeoutMs: 120_000,
    },
  );
}

export function pythonFunction(name: string, code: string, spec: Record<string, unknown> = {}): string {
  const extra = Object.entries(spec)
    .map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`)
    .join("\n");
  const indented = code
    .split("\n")
    .map((l) => `    ${l}`)
    .join("\n");
  return `apiVersion: faas.example.com/v1
kind: Function
metadata:
  name: ${name}
spec:
  runtime: python
  handler: main.handle
${extra}
  code: |
${indented}
`;
}

export interface BurstResult {
  byStatus: Record<number, number>;
  bodies: Set<string>;
  scalePatches: number;
  /** Pool pods specialized for the burst, summed over every gateway. */
  poolClaims: number;
  pods: number;
  seconds: number;
}

/** Pods gateways claimed from the warm pool for a function (not being deleted). */
export async function claimedPods(namespace: string, fn: string): Promise<string[]> {
  const pods = await kubectlJson<PodList>(["-n", namespace, "get", "pods", "-l", `faas.example.com/claimed-for=${fn}`]);
  return pods.items.filter((p) => !p.metadata.deletionTimestamp).map((p) => p.metadata.name);
}

/** Ready, unclaimed pool pods of a runtime. */
export async function idlePoolPods(namespace: string, runtime: string): Promise<string[]> {
  const pods = await kubectlJson<{
    items: {
      metadata: { name: string; deletionTimestamp?: string };
      status?: { conditions?: { type: string; status: string }[] };
    }[];
  }>(["-n", namespace, "get", "pods", "-l", `faas.example.com/pool=${runtime},faas.example.com/pool-state=idle`]);
  return pods.items
    .filter(
      (p) =>
        !p.metadata.deletionTimestamp &&
        p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") === true,
    )
    .map((p) => p.metadata.name);
}

/** Waits until the pool of a runtime has `size` ready idle pods. */
export async function waitForPool(
  namespace: string,
  runtime: string,
  size: number,
  timeoutMs = 120_000,
): Promise<void> {
  await waitFor(
    `${size} idle ${runtime} pool pods in ${namespace}`,
    async () => ((await idlePoolPods(namespace, runtime)).length >= size ? true : undefined),
    { timeoutMs, intervalMs: 250 },
  );
}

/**
 * Scales a function's Deployment to zero, waits until every gateway sees no
 * endpoint, then sends `count` concurrent requests and counts what came back.
 */
export async function burstFromZero(namespace: string, fn: string, count: number, port: number): Promise<BurstResult> {
  await kubectl(["-n", namespace, "scale", "deployment", `fn-${fn}-deploy`, "--replicas=0"]);
  await waitFor(`${fn} at zero pods`, async () =>
    (await functionPods(namespace, fn)).length === 0 ? true : undefined,
  );
  await waitFor("gateways to see no endpoint", async () =>
    (await gatewayMetric("faas_replicas_ready", { function: fn })) === 0 ? true : undefined,
  );
  const patchesBefore = await gatewayMetric("faas_scale_patches_total", { function: fn });
  const claimsBefore = await gatewayMetric("faas_pool_claims_total", { result: "claimed" });
  const t0 = performance.now();
  const replies = await Promise.all(Array.from({ length: count }, () => invoke(port, `/invoke/${fn}`)));
  const seconds = (performance.now() - t0) / 1000;
  const byStatus: Record<number, number> = {};
  for (const r of replies) byStatus[r.status] = (byStatus[r.status] ?? 0) + 1;
  // A pool pod may have served the burst: the Deployment's own pod follows the scale patch.
  await waitFor(`a pod of ${fn}`, async () => ((await functionPods(namespace, fn)).length > 0 ? true : undefined));
  return {
    byStatus,
    bodies: new Set(replies.map((r) => r.body)),
    scalePatches: (await gatewayMetric("faas_scale_patches_total", { function: fn })) - patchesBefore,
    poolClaims: (await gatewayMetric("faas_pool_claims_total", { result: "claimed" })) - claimsBefore,
    pods: (await functionPods(namespace, fn)).length,
    seconds,
  };
}

export interface LocalGateway {
  port: number;
  logFile: string;
  /** One metric of this gateway, summed over the series whose labels match. */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const { createServer } = await import("node:net");
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * The gateway of this worktree's build as a local process serving one
 * namespace (`node packages/kube-backend/dist/main.js`, as in a pod, against
 * the test cluster's kubeconfig); pod IPs are reachable from this machine.
 * Leaves the cluster's own gateway alone.
 */
export async function startLocalGateway(namespace: string, env: Record<string, string> = {}): Promise<LocalGateway> {
  mkdirSync(join(repoRoot, ".faas"), { recursive: true });
  const logFile = join(repoRoot, ".faas", `gateway-${namespace}-${Date.now()}.log`);
  const out = createWriteStream(logFile);
  const port = await freePort();
  const child = spawn(process.execPath, [join(repoRoot, "packages/kube-backend/dist/main.js")], {
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "/root",
      KUBECONFIG: kubeconfigPath,
      FAAS_FUNCTION_NAMESPACE: namespace,
      FAAS_GATEWAY_HOST: "127.0.0.1",
      FAAS_GATEWAY_PORT: String(port),
      // Pods cannot reach a gateway on this host's loopback to announce themselves.
      FAAS_ANNOUNCE_PORT: "0",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.pipe(out);
  child.stderr?.pipe(out);
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  await waitFor(
    "the local gateway to be ready",
    async () => {
      if (child.exitCode !== null) throw new Error(`gateway exited ${child.exitCode}; see ${logFile}`);
      const r = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
      return r?.status === 200 ? true : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 250 },
  );
  return {
    port,
    logFile,
    async metric(name, labels = {}) {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      let total = 0;
      for (const line of text.split("\n")) {
        if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
        if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)))
          total += Number(line.slice(line.lastIndexOf(" ") + 1));
      }
      return total;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Applies crd.yaml (this worktree's Function schema) and waits until it is served. */
export async function installCrd(): Promise<void> {
  await kubectl(["apply", "-f", join(repoRoot, "crd.yaml")]);
  await kubectl(["wait", "--for=condition=Established", "crd/functions.faas.example.com", "--timeout=60s"]);
}
