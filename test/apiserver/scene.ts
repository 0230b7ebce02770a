/**
 * Objects a test puts in the API server, standing in for what the operator,
 * the Deployment controller and the kubelet would make: a namespace per test,
 * Functions, their Deployments, and EndpointSlices pointing at a local HTTP
 * server that plays the function's pod.
 */
import { randomBytes } from "node:crypto";
import { deploymentName, FUNCTION_LABEL, serviceName } from "@faas/api";
import { type KubeClient, type KubeObject, RESOURCES } from "@faas/kube";

export const FIELD_MANAGER = "faas-test";

export function randomName(prefix: string): string {
  return `${prefix}-${randomBytes(3).toString("hex")}`;
}

export async function createNamespace(client: KubeClient, prefix = "t"): Promise<string> {
  const name = randomName(prefix);
  await client.create(RESOURCES.namespaces, { apiVersion: "v1", kind: "Namespace", metadata: { name } }, FIELD_MANAGER);
  return name;
}

export function functionObject(name: string, spec: Record<string, unknown> = {}): KubeObject {
  return {
    apiVersion: "faas.example.com/v1",
    kind: "Function",
    metadata: { name },
    spec: {
      runtime: "python",
      handler: "main.handle",
      code: "def handle(req):\n    return 'hi'\n",
      minReplicas: 0,
      maxReplicas: 3,
      concurrency: 10,
      idleSeconds: 60,
      ...spec,
    },
  };
}

export async function createFunction(
  client: KubeClient,
  ns: string,
  name: string,
  spec: Record<string, unknown> = {},
): Promise<KubeObject> {
  return client.create({ ...RESOURCES.functions, namespace: ns }, functionObject(name, spec), FIELD_MANAGER);
}

/** A Deployment like the operator's (no controller runs, so it never gets pods). */
export async function createDeployment(
  client: KubeClient,
  ns: string,
  fn: string,
  replicas: number,
): Promise<KubeObject> {
  const labels = { [FUNCTION_LABEL]: fn };
  return client.create(
    { ...RESOURCES.deployments, namespace: ns },
    {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: deploymentName(fn), labels },
      spec: {
        replicas,
        selector: { matchLabels: labels },
        template: { metadata: { labels }, spec: { containers: [{ name: "runner", image: "faas-runner:test" }] } },
      },
    },
    FIELD_MANAGER,
  );
}

/** The EndpointSlice the endpoint controller would write for the function's Service: one ready pod per port. */
export async function putSlice(
  client: KubeClient,
  ns: string,
  fn: string,
  pods: { name: string; address: string; port: number; ready?: boolean }[],
  sliceName = `${serviceName(fn)}-abcde`,
): Promise<KubeObject> {
  const ports = [...new Set(pods.map((p) => p.port))];
  if (ports.length > 1) throw new Error("one port per slice");
  const body = {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: { name: sliceName, labels: { "kubernetes.io/service-name": serviceName(fn) } },
    addressType: "IPv4",
    endpoints: pods.map((p) => ({
      addresses: [p.address],
      conditions: { ready: p.ready ?? true },
      targetRef: { kind: "Pod", name: p.name, namespace: ns },
    })),
    ports: ports.map((port) => ({ name: "http", port, protocol: "TCP" })),
  };
  return client.apply({ ...RESOURCES.endpointslices, namespace: ns, name: sliceName }, body, FIELD_MANAGER);
}

/** Function, Deployment at 1 and a ready slice: a function that is warm. */
export async function createWarmFunction(
  client: KubeClient,
  ns: string,
  fn: string,
  runner: { address: string; port: number },
): Promise<void> {
  await createFunction(client, ns, fn);
  await createDeployment(client, ns, fn, 1);
  await putSlice(client, ns, fn, [{ name: `${fn}-pod`, address: runner.address, port: runner.port }]);
}

/** Polls `check` every 20 ms until it returns true, or fails after `timeoutMs`. */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
