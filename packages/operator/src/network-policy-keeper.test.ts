import { KubeError, type KubeObject, type ResourceRef } from "@faas/kube";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { NetworkPolicyKeeper } from "./network-policy-keeper.js";

/** An in-memory stand-in for the API server's NetworkPolicies. */
class FakeClient {
  readonly objects = new Map<string, KubeObject>();
  readonly calls: string[] = [];
  failApply = false;
  #key = (r: ResourceRef) => `${r.namespace}/${r.name}`;
  async apply<T>(r: ResourceRef, obj: unknown, fieldManager: string): Promise<T> {
    this.calls.push(`apply ${this.#key(r)} as ${fieldManager}`);
    if (this.failApply) throw new KubeError(500, "InternalError", "boom");
    this.objects.set(this.#key(r), obj as KubeObject);
    return obj as T;
  }
  async find<T>(r: ResourceRef): Promise<T | undefined> {
    return this.objects.get(this.#key(r)) as T | undefined;
  }
  async delete(r: ResourceRef): Promise<boolean> {
    this.calls.push(`delete ${this.#key(r)}`);
    return this.objects.delete(this.#key(r));
  }
}

const log = pino({ level: "silent" });

function keeper(client: FakeClient, networkPolicy: boolean, namespaces: string[]) {
  return new NetworkPolicyKeeper({
    client,
    cfg: { networkPolicy, gatewayNamespace: "faas-system", resyncSeconds: 300 },
    namespaces: () => namespaces,
    log,
  });
}

describe("NetworkPolicyKeeper", () => {
  it("does nothing until it leads", async () => {
    const c = new FakeClient();
    await keeper(c, true, ["a"]).ensure("a");
    expect(c.calls).toEqual([]);
  });

  it("applies both policies in every namespace served when leadership starts, once per term", async () => {
    const c = new FakeClient();
    const k = keeper(c, true, ["a", "b"]);
    k.setEnabled(true);
    await Promise.all([k.ensure("a"), k.ensure("b")]);
    await k.ensure("a");
    expect(c.calls.sort()).toEqual([
      "apply a/faas-functions-ingress as faas-operator",
      "apply a/faas-pool-ingress as faas-operator",
      "apply b/faas-functions-ingress as faas-operator",
      "apply b/faas-pool-ingress as faas-operator",
    ]);
    k.setEnabled(false);
  });

  it("retries a namespace whose apply failed", async () => {
    const c = new FakeClient();
    c.failApply = true;
    const k = keeper(c, true, []);
    k.setEnabled(true);
    await k.ensure("a");
    c.failApply = false;
    await k.ensure("a");
    expect([...c.objects.keys()].sort()).toEqual(["a/faas-functions-ingress", "a/faas-pool-ingress"]);
    k.setEnabled(false);
  });

  it("turned off: removes the policies it made, leaves one of the same name that is not its own", async () => {
    const c = new FakeClient();
    c.objects.set("a/faas-functions-ingress", {
      metadata: { name: "faas-functions-ingress", labels: { "app.kubernetes.io/managed-by": "faas-operator" } },
    });
    c.objects.set("a/faas-pool-ingress", { metadata: { name: "faas-pool-ingress", labels: { team: "mine" } } });
    const k = keeper(c, false, ["a"]);
    k.setEnabled(true);
    await k.ensure("a");
    expect(c.calls).toEqual(["delete a/faas-functions-ingress"]);
    expect([...c.objects.keys()]).toEqual(["a/faas-pool-ingress"]);
    k.setEnabled(false);
  });
});
