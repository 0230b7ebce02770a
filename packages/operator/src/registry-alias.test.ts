import { REGISTRY_HOST } from "@faas/api";
import { describe, expect, it } from "vitest";
import { RegistryAlias } from "./registry-alias.js";

function fakeClient(answers: (object | undefined | Error)[]) {
  const calls: string[] = [];
  return {
    calls,
    async find<T>(r: { namespace?: string; name?: string }): Promise<T | undefined> {
      calls.push(`${r.namespace}/${r.name}`);
      const next = answers.shift();
      if (next instanceof Error) throw next;
      return next as T | undefined;
    },
  };
}

describe("RegistryAlias", () => {
  it("maps the registry's name to its Service's ClusterIP and asks once", async () => {
    const client = fakeClient([{ spec: { clusterIP: "10.96.0.42" } }]);
    const alias = new RegistryAlias(client);
    const want = [{ ip: "10.96.0.42", hostnames: [REGISTRY_HOST] }];
    expect(await alias.hostAliases()).toEqual(want);
    expect(await alias.hostAliases()).toEqual(want);
    expect(client.calls).toEqual(["faas-system/faas-registry"]);
  });

  it("gives no alias while there is no registry, and looks again after 10 s", async () => {
    let now = 0;
    const client = fakeClient([undefined, new Error("forbidden"), { spec: { clusterIP: "10.96.0.7" } }]);
    const alias = new RegistryAlias(client, () => now);
    expect(await alias.hostAliases()).toEqual([]);
    now = 5_000;
    expect(await alias.hostAliases()).toEqual([]);
    expect(client.calls).toHaveLength(1);
    now = 10_000;
    expect(await alias.hostAliases()).toEqual([]); // the error: still none
    now = 20_000;
    expect(await alias.hostAliases()).toEqual([{ ip: "10.96.0.7", hostnames: [REGISTRY_HOST] }]);
    expect(client.calls).toHaveLength(3);
  });

  it("looks a found address up again after a minute: a re-created Service's new IP is taken, an error keeps the old", async () => {
    let now = 0;
    const client = fakeClient([
      { spec: { clusterIP: "10.96.0.1" } },
      new Error("timeout"),
      { spec: { clusterIP: "10.96.0.2" } },
      undefined,
    ]);
    const alias = new RegistryAlias(client, () => now);
    expect((await alias.hostAliases())[0]?.ip).toBe("10.96.0.1");
    now = 59_000;
    expect((await alias.hostAliases())[0]?.ip).toBe("10.96.0.1");
    expect(client.calls).toHaveLength(1);
    now = 61_000;
    expect((await alias.hostAliases())[0]?.ip).toBe("10.96.0.1"); // the lookup failed: kept
    now = 122_000;
    expect((await alias.hostAliases())[0]?.ip).toBe("10.96.0.2");
    now = 183_000;
    expect(await alias.hostAliases()).toEqual([]); // the Service is gone
    expect(client.calls).toHaveLength(4);
  });

  it("a headless Service is no address", async () => {
    const alias = new RegistryAlias(fakeClient([{ spec: { clusterIP: "None" } }]));
    expect(await alias.hostAliases()).toEqual([]);
  });

  it("concurrent callers share one lookup", async () => {
    const client = fakeClient([{ spec: { clusterIP: "10.96.0.9" } }]);
    const alias = new RegistryAlias(client);
    await Promise.all([alias.hostAliases(), alias.hostAliases(), alias.hostAliases()]);
    expect(client.calls).toHaveLength(1);
  });
});
