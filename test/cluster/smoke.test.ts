/**
 * End to end on the cluster, the path of the README's walkthrough: the
 * project's Python runner image serves a function whose code comes from a
 * ConfigMap mounted at /code, and answers through its Service from the host
 * (the ClusterIP, via kube-proxy's rules) and through kubectl port-forward.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { httpGet, kubectlJson, type PortForward, portForward, useTestNamespace, waitFor } from "./fixture.js";

const ns = useTestNamespace("smoke");

const handler = `import os


def handle(req):
    name = req.query.get("name", "world")
    return {"hello": name, "pod": os.environ.get("HOSTNAME", "")}
`;

const functionJson = JSON.stringify({ name: "hello", runtime: "python", handler: "main.handle", timeoutSeconds: 10 });

function manifests(namespace: string): string {
  return `
apiVersion: v1
kind: ConfigMap
metadata: { name: fn-hello-code, namespace: ${namespace} }
data:
  main.py: ${JSON.stringify(handler)}
  function.json: ${JSON.stringify(functionJson)}
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: fn-hello-deploy, namespace: ${namespace}, labels: { faas.example.com/function: hello } }
spec:
  replicas: 1
  selector: { matchLabels: { faas.example.com/function: hello } }
  template:
    metadata: { labels: { faas.example.com/function: hello } }
    spec:
      containers:
        - name: runner
          image: faas-python-runner:latest
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
          configMap: { name: fn-hello-code }
---
apiVersion: v1
kind: Service
metadata: { name: fn-hello, namespace: ${namespace}, labels: { faas.example.com/function: hello } }
spec:
  selector: { faas.example.com/function: hello }
  ports: [{ name: http, port: 80, targetPort: http }]
`;
}

describe("smoke: Python runner from a ConfigMap, through a Service", () => {
  let clusterIp = "";
  let forward: PortForward | undefined;

  beforeAll(async () => {
    await ns.apply(manifests(ns.name));
    await ns.kubectl(["rollout", "status", "deployment/fn-hello-deploy", "--timeout=180s"], { timeoutMs: 200_000 });
    const svc = await kubectlJson<{ spec: { clusterIP: string } }>(["-n", ns.name, "get", "service", "fn-hello"]);
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
    expect(body.pod).toMatch(/^fn-hello-deploy-/);
  });

  it("is ready and specialized from the mounted code", async () => {
    const r = await waitFor("readyz", async () => {
      const res = await httpGet(`http://${clusterIp}/readyz`);
      return res.status === 200 ? res : undefined;
    });
    expect(JSON.parse(r.body)).toMatchObject({ status: "ready", function: "hello" });
  });

  it("answers through kubectl port-forward", async () => {
    forward = await portForward(ns.name, "service/fn-hello", 80);
    const r = await httpGet(`http://127.0.0.1:${forward.localPort}/invoke/?name=forwarded`);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ hello: "forwarded" });
  });
});
