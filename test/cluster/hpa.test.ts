/**
 * The HPA machinery on the cluster: metrics-server feeds CPU usage to an
 * autoscaling/v2 HPA, which scales a CPU-burning function from 1 to more
 * replicas under load from the host and back to 1 once the load stops (the
 * downscale stabilization window is shortened for time).
 */
import { describe, expect, it } from "vitest";
import { httpGet, kubectlJson, useTestNamespace, waitFor } from "./fixture.js";

const ns = useTestNamespace("hpa");

// Each call keeps one core busy for 200 ms.
const burner = `import time


def handle(req):
    end = time.process_time() + 0.2
    n = 0
    while time.process_time() < end:
        n += 1
    return {"spins": n}
`;

function manifests(namespace: string): string {
  return `
apiVersion: v1
kind: ConfigMap
metadata: { name: burner-code, namespace: ${namespace} }
data:
  main.py: ${JSON.stringify(burner)}
  function.json: ${JSON.stringify(JSON.stringify({ name: "burner", runtime: "python", handler: "main.handle", timeoutSeconds: 10 }))}
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: burner, namespace: ${namespace} }
spec:
  replicas: 1
  selector: { matchLabels: { app: burner } }
  template:
    metadata: { labels: { app: burner } }
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        - name: runner
          image: faas-python-runner:latest
          imagePullPolicy: Never
          ports: [{ name: http, containerPort: 8080 }]
          readinessProbe: { httpGet: { path: /readyz, port: http }, periodSeconds: 1 }
          volumeMounts: [{ name: code, mountPath: /code, readOnly: true }]
          resources:
            requests: { cpu: 100m, memory: 32Mi }
            limits: { cpu: 500m }
      volumes: [{ name: code, configMap: { name: burner-code } }]
---
apiVersion: v1
kind: Service
metadata: { name: burner, namespace: ${namespace} }
spec:
  selector: { app: burner }
  ports: [{ name: http, port: 80, targetPort: http }]
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: { name: burner, namespace: ${namespace} }
spec:
  scaleTargetRef: { apiVersion: apps/v1, kind: Deployment, name: burner }
  minReplicas: 1
  maxReplicas: 3
  metrics:
    - type: Resource
      resource: { name: cpu, target: { type: Utilization, averageUtilization: 50 } }
  behavior:
    scaleUp:
      stabilizationWindowSeconds: 0
      policies: [{ type: Percent, value: 200, periodSeconds: 5 }]
    scaleDown:
      stabilizationWindowSeconds: 15
      policies: [{ type: Percent, value: 100, periodSeconds: 5 }]
`;
}

interface Hpa {
  status: {
    currentReplicas?: number;
    desiredReplicas?: number;
    currentMetrics?: { resource?: { current?: { averageUtilization?: number } } }[] | null;
  };
}
interface Deployment {
  spec: { replicas: number };
  status: { replicas?: number; readyReplicas?: number };
}

/** Concurrent calls to `url` until `stop` is set or `maxMs` passes; bounded in time. */
async function load(url: string, concurrency: number, maxMs: number, stop: { done: boolean }): Promise<number> {
  const deadline = Date.now() + maxMs;
  let calls = 0;
  const worker = async () => {
    while (!stop.done && Date.now() < deadline) {
      try {
        await httpGet(url, 10_000);
        calls++;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return calls;
}

describe("HPA on CPU", () => {
  it("scales a CPU-burning Deployment 1 → >1 under load and back to 1", async () => {
    await ns.apply(manifests(ns.name));
    await ns.kubectl(["rollout", "status", "deployment/burner", "--timeout=180s"], { timeoutMs: 200_000 });
    const svc = await kubectlJson<{ spec: { clusterIP: string } }>(["-n", ns.name, "get", "service", "burner"]);
    const url = `http://${svc.spec.clusterIP}/invoke/`;
    await waitFor("the burner through its Service", async () =>
      (await httpGet(url, 10_000)).status === 200 ? true : undefined,
    );

    // The HPA reads a utilization once metrics-server has a sample of the pod.
    await waitFor(
      "the HPA to read CPU utilization",
      async () => {
        const hpa = await kubectlJson<Hpa>(["-n", ns.name, "get", "hpa", "burner"]);
        return hpa.status.currentMetrics?.[0]?.resource?.current?.averageUtilization;
      },
      { timeoutMs: 120_000, intervalMs: 2_000 },
    );

    const stop = { done: false };
    const loading = load(url, 4, 240_000, stop);
    let peak = 1;
    try {
      peak = await waitFor(
        "the Deployment to scale above 1 replica",
        async () => {
          const d = await kubectlJson<Deployment>(["-n", ns.name, "get", "deployment", "burner"]);
          return d.spec.replicas > 1 ? d.spec.replicas : undefined;
        },
        { timeoutMs: 240_000, intervalMs: 2_000 },
      );
    } finally {
      stop.done = true;
      await loading;
    }
    expect(peak).toBeGreaterThan(1);

    const settled = await waitFor(
      "the Deployment to scale back to 1 replica",
      async () => {
        const d = await kubectlJson<Deployment>(["-n", ns.name, "get", "deployment", "burner"]);
        return d.spec.replicas === 1 && d.status.replicas === 1 ? d : undefined;
      },
      { timeoutMs: 300_000, intervalMs: 3_000 },
    );
    expect(settled.spec.replicas).toBe(1);
  });
});
