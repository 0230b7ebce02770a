/**
 * Deploys of one function racing on the cluster: several `kubectl apply` of
 * different code at once. Whatever order the API server takes them in, once
 * the operator reports the roll-out done every pod serves the code in the
 * Function object, and the answer does not change without a deploy — not even
 * when a pod is replaced (each pod mounts its own version's immutable code).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { httpGet, kubectl, kubectlJson, useTestNamespace, waitFor } from "./fixture.js";
import { type LocalOperator, pythonFunction, startLocalOperator } from "./support/platform.js";

const ns = useTestNamespace("racing");

interface Pod {
  metadata: { name: string; deletionTimestamp?: string; annotations?: Record<string, string> };
  status?: { podIP?: string; conditions?: { type: string; status: string }[] };
}

async function readyPods(): Promise<Pod[]> {
  const list = await kubectlJson<{ items: Pod[] }>([
    "-n",
    ns.name,
    "get",
    "pods",
    "-l",
    "faas.example.com/function=racing",
  ]);
  return list.items.filter(
    (p) =>
      !p.metadata.deletionTimestamp && p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
  );
}

describe("concurrent deploys of one function", () => {
  let operator: LocalOperator;
  beforeAll(async () => {
    operator = await startLocalOperator(ns.name, { FAAS_POOL_SIZE: "0", FAAS_PRESTOP_SLEEP_SECONDS: "1" });
  });
  afterAll(async () => {
    await operator?.stop();
  });

  it("every pod serves the stored code after racing applies, and keeps serving it", async () => {
    const version = (v: number) => pythonFunction("racing", `def handle(req):\n    return "v${v}"`, { minReplicas: 2 });
    await ns.apply(version(0));
    await waitFor("two ready pods of v0", async () => ((await readyPods()).length === 2 ? true : undefined), {
      timeoutMs: 180_000,
    });
    // Six applies of different code at once.
    await Promise.all([1, 2, 3, 4, 5, 6].map((v) => ns.kubectl(["apply", "-f", "-"], { input: version(v) })));
    const fn = await kubectlJson<{ metadata: { generation: number }; spec: { code: string } }>([
      "-n",
      ns.name,
      "get",
      "function",
      "racing",
    ]);
    const stored = /return "(v\d)"/.exec(fn.spec.code)?.[1];
    expect(stored).toMatch(/^v[1-6]$/);
    // Reported done: the status has this generation, and the roll-out is complete with 2 pods.
    await waitFor(
      "the roll-out of the stored code",
      async () => {
        const f = await kubectlJson<{
          status?: { observedGeneration?: number; conditions?: { type: string; reason: string }[] };
        }>(["-n", ns.name, "get", "function", "racing"]);
        const done =
          f.status?.observedGeneration === fn.metadata.generation &&
          f.status?.conditions?.find((c) => c.type === "Progressing")?.reason === "RolloutComplete";
        return done && (await readyPods()).length === 2 ? true : undefined;
      },
      { timeoutMs: 180_000 },
    );
    const answers = async (): Promise<string[]> =>
      Promise.all((await readyPods()).map(async (p) => (await httpGet(`http://${p.status?.podIP}:8080/invoke`)).body));
    expect(await answers()).toEqual([stored, stored]);

    // No deploy: a replaced pod, and a while later, still the stored code everywhere.
    const [victim] = await readyPods();
    await ns.kubectl(["delete", "pod", victim?.metadata.name as string, "--wait=false"]);
    await waitFor(
      "a replacement pod",
      async () => {
        const pods = await readyPods();
        return pods.length === 2 && !pods.some((p) => p.metadata.name === victim?.metadata.name) ? true : undefined;
      },
      { timeoutMs: 120_000 },
    );
    for (let i = 0; i < 5; i++) {
      expect(await answers()).toEqual([stored, stored]);
      await new Promise((r) => setTimeout(r, 1000));
    }
    // Only the stored version's code ConfigMap is left.
    await waitFor("old code ConfigMaps to go", async () => {
      const cms = await kubectlJson<{ items: unknown[] }>([
        "-n",
        ns.name,
        "get",
        "configmap",
        "-l",
        "faas.example.com/function=racing",
      ]);
      return cms.items.length === 1 ? true : undefined;
    });
    await kubectl(["-n", ns.name, "delete", "function", "racing", "--wait=false"]);
  });
});
