/**
 * The local cluster itself: the node is Ready, metrics-server runs and the
 * metrics API answers (what the HPA and `kubectl top` need).
 */
import { describe, expect, it } from "vitest";
import { kubectl, kubectlJson, waitFor } from "./fixture.js";

interface Condition {
  type: string;
  status: string;
}
interface NodeList {
  items: { metadata: { name: string }; status: { conditions: Condition[] } }[];
}
interface PodList {
  items: { metadata: { name: string }; status: { phase: string; conditions?: Condition[] } }[];
}

describe("local cluster", () => {
  it("has one node, and it is Ready", async () => {
    const nodes = await kubectlJson<NodeList>(["get", "nodes"]);
    expect(nodes.items).toHaveLength(1);
    const ready = nodes.items[0]?.status.conditions.find((c) => c.type === "Ready");
    expect(ready?.status).toBe("True");
  });

  it("runs metrics-server", async () => {
    const pods = await kubectlJson<PodList>(["-n", "kube-system", "get", "pods", "-l", "k8s-app=metrics-server"]);
    expect(pods.items.length).toBeGreaterThan(0);
    for (const pod of pods.items) {
      expect(pod.status.phase).toBe("Running");
      expect(pod.status.conditions?.find((c) => c.type === "Ready")?.status).toBe("True");
    }
    const apiService = await kubectlJson<{ status: { conditions: Condition[] } }>([
      "get",
      "apiservice",
      "v1beta1.metrics.k8s.io",
    ]);
    expect(apiService.status.conditions.find((c) => c.type === "Available")?.status).toBe("True");
  });

  it("answers kubectl top pods -A and top nodes", async () => {
    const top = await waitFor("kubectl top pods -A", async () => {
      const r = await kubectl(["top", "pods", "-A", "--no-headers"], { allowFailure: true });
      return r.code === 0 && r.stdout.includes("metrics-server") ? r.stdout : undefined;
    });
    // NAMESPACE NAME CPU MEMORY, with real numbers.
    expect(top).toMatch(/kube-system\s+metrics-server-\S+\s+\d+m\s+\d+Mi/);
    const nodes = await kubectl(["top", "nodes", "--no-headers"]);
    expect(nodes.stdout).toMatch(/faas-node|\S+\s+\d+m\s+\d+%/);
  });
});
