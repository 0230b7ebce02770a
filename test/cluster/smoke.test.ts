/**
 * End to end on the cluster, the path of the README's walkthrough: the
 * project's runner images serve a function whose code comes from a ConfigMap
 * mounted at /code, and answer through their Service from the host (the
 * ClusterIP, via kube-proxy's rules) and through kubectl port-forward. Also
 * pins the images' contract: non-root user 10001.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { httpGet, kubectlJson, type PortForward, portForward, useTestNamespace, waitFor } from "./fixture.js";

const ns = useTestNamespace("smoke");

interface Case {
  name: string;
  image: string;
  runtime: string;
  file: string;
  code: string;
  /** Prints the process's uid inside the container. */
  uidCommand: string[];
}

const cases: Case[] = [
  {
    name: "hello-py",
    image: "faas-python-runner:latest",
    runtime: "python",
    file: "main.py",
    code: `import os


def handle(req):
    name = req.query.get("name", "world")
    return {"hello": name, "pod": os.environ.get("HOSTNAME", "")}
`,
    uidCommand: ["python3", "-c", "import os; print(os.getuid())"],
  },
  {
    name: "hello-js",
    image: "faas-node-runner:latest",
    runtime: "nodejs",
    file: "main.mjs",
    code: `export function handle(req) {
  const name = new URL(req.url).searchParams.get("name") ?? "world";
  return { hello: name, pod: process.env.HOSTNAME ?? "" };
}
`,
    uidCommand: ["node", "-e", "console.log(process.getuid())"],
  },
];

function manifests(c: Case, namespace: string): string {
  const spec = { name: c.name, runtime: c.runtime, handler: "main.handle", timeoutSeconds: 10 };
  return `
apiVersion: v1
kind: ConfigMap
metadata: { name: fn-${c.name}-code, namespace: ${namespace} }
data:
  ${c.file}: ${JSON.stringify(c.code)}
  function.json: ${JSON.stringify(JSON.stringify(spec))}
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: fn-${c.name}-deploy, namespace: ${namespace}, labels: { faas.example.com/function: ${c.name} } }
spec:
  replicas: 1
  selector: { matchLabels: { faas.example.com/function: ${c.name} } }
  template:
    metadata: { labels: { faas.example.com/function: ${c.name} } }
    spec:
      containers:
        - name: runner
          image: ${c.image}
          imagePullPolicy: Never
          env:
            - { name: FAAS_CODE_DIR, value: /code }
            - { name: FAAS_PORT, value: "8080" }
          ports: [{ name: http, containerPort: 8080 }]
          readinessProbe:
            httpGet: { path: /readyz, port: http }
            periodSeconds: 1
          volumeMounts: [{ name: code, mountPath: /code, readOnly: true }]
          resources: { requests: { cpu: 50m, memory: 32Mi } }
      volumes:
        - name: code
          configMap: { name: fn-${c.name}-code }
---
apiVersion: v1
kind: Service
metadata: { name: fn-${c.name}, namespace: ${namespace}, labels: { faas.example.com/function: ${c.name} } }
spec:
  selector: { faas.example.com/function: ${c.name} }
  ports: [{ name: http, port: 80, targetPort: http }]
`;
}

describe.each(cases)("smoke: $image serves a function from a ConfigMap", (c) => {
  let clusterIp = "";
  let forward: PortForward | undefined;

  beforeAll(async () => {
    await ns.apply(manifests(c, ns.name));
    await ns.kubectl(["rollout", "status", `deployment/fn-${c.name}-deploy`, "--timeout=180s"], {
      timeoutMs: 200_000,
    });
    const svc = await kubectlJson<{ spec: { clusterIP: string } }>(["-n", ns.name, "get", "service", `fn-${c.name}`]);
    clusterIp = svc.spec.clusterIP;
  });

  afterAll(() => forward?.close());

  it("answers on the Service's ClusterIP from the host", async () => {
    expect(clusterIp).toMatch(/^10\.96\.0\.\d+$/);
    // kube-proxy programs the Service's rules asynchronously; retry briefly.
    const reply = await waitFor(
      "the function through the ClusterIP",
      async () => {
        const r = await httpGet(`http://${clusterIp}/invoke/?name=cluster`);
        return r.status === 200 ? r : undefined;
      },
      { timeoutMs: 60_000 },
    );
    const body = JSON.parse(reply.body) as { hello: string; pod: string };
    expect(body.hello).toBe("cluster");
    expect(body.pod).toMatch(new RegExp(`^fn-${c.name}-deploy-`));
  });

  it("is ready and specialized from the mounted code", async () => {
    const r = await httpGet(`http://${clusterIp}/readyz`);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ status: "ready", function: c.name });
  });

  it("answers through kubectl port-forward", async () => {
    forward = await portForward(ns.name, `service/fn-${c.name}`, 80);
    const r = await httpGet(`http://127.0.0.1:${forward.localPort}/invoke/?name=forwarded`);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ hello: "forwarded" });
  });

  it("runs as the image's non-root user 10001", async () => {
    const { stdout } = await ns.kubectl(["exec", `deployment/fn-${c.name}-deploy`, "--", ...c.uidCommand]);
    expect(stdout.trim()).toBe("10001");
  });
});
