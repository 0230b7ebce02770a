/** The reflector against a real API server whose answers a proxy fails, holds and cuts. */
import { type KubeClient, type KubeObject, RESOURCES, Reflector } from "@faas/kube";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { on } from "./fault-proxy.js";
import { ApiServer, apiServerSkipReason } from "./fixture.js";
import { createNamespace, eventually, FIELD_MANAGER } from "./scene.js";

const skip = apiServerSkipReason();
const log = pino({ level: process.env.FAAS_TEST_LOG ?? "silent" });

describe.skipIf(skip !== undefined)("Reflector against a real API server", () => {
  let api: ApiServer;
  let admin: KubeClient;
  const reflectors: Reflector<KubeObject>[] = [];

  beforeAll(async () => {
    api = await ApiServer.start();
    admin = api.directClient();
  }, 60_000);
  afterAll(async () => {
    for (const r of reflectors) r.stop();
    await api?.stop();
  });

  function reflect(ns: string, client = api.client(), backoffBaseMs = 50): Reflector<KubeObject> {
    const r = new Reflector<KubeObject>(
      client,
      { resource: { ...RESOURCES.configmaps, namespace: ns }, backoffBaseMs, backoffMaxMs: backoffBaseMs * 8 },
      log,
    );
    reflectors.push(r);
    return r;
  }
  const createConfigMap = (ns: string, name: string) =>
    admin.create(
      { ...RESOURCES.configmaps, namespace: ns },
      { apiVersion: "v1", kind: "ConfigMap", metadata: { name } },
      FIELD_MANAGER,
    );

  it("retries a first list that fails, and start() resolves with the listed objects", async () => {
    const ns = await createNamespace(admin);
    await createConfigMap(ns, "before");
    const failing = api.proxy.fault(
      on({ verb: "list", resource: "configmaps", namespace: ns }),
      { kind: "fail", status: 429 },
      3,
    );
    const r = reflect(ns);
    await r.start();
    expect(failing.hits).toBe(3);
    expect(r.synced).toBe(true);
    expect(r.get(`${ns}/before`)).toBeDefined();
  });

  it("a listener that throws is logged and counted; the watch and the other listeners go on", async () => {
    const ns = await createNamespace(admin);
    const client = api.client();
    const r = reflect(ns, client);
    const seen: string[] = [];
    r.on("add", (cm) => {
      if (cm.metadata.name === "bad") throw new Error("handler bug");
    });
    r.on("add", (cm) => seen.push(cm.metadata.name));
    await r.start();
    const watches = on({ verb: "watch", resource: "configmaps", namespace: ns });
    await api.proxy.waitFor(watches, 1);
    await createConfigMap(ns, "bad");
    await createConfigMap(ns, "good");
    await eventually(() => seen.includes("good"), 5000, "the event after the throwing one");
    expect(seen).toEqual(expect.arrayContaining(["bad", "good"]));
    expect((await client.metrics.handlerErrors.get()).values[0]?.value).toBe(1);
    // Same watch throughout: the exception did not restart it.
    expect(api.proxy.count(watches)).toBe(1);
  });

  it("a watch the server keeps ending at once is retried with backoff, not in a busy loop", async () => {
    const ns = await createNamespace(admin);
    const watches = on({ verb: "watch", resource: "configmaps", namespace: ns });
    api.proxy.fault(watches, { kind: "end" }, 1000);
    const r = reflect(ns);
    await r.start();
    await new Promise((resolve) => setTimeout(resolve, 1500));
    // Backoff 50 ms doubling to 400 ms (×0.5–1.5): a handful in 1.5 s; a busy loop makes hundreds.
    const n = api.proxy.count(watches);
    expect(n).toBeGreaterThanOrEqual(2);
    expect(n).toBeLessThan(20);
  });

  it("stop() before the first list completes settles start() and sends nothing more", async () => {
    const ns = await createNamespace(admin);
    const lists = on({ verb: "list", resource: "configmaps", namespace: ns });
    let release!: () => void;
    api.proxy.fault(lists, { kind: "hold", until: new Promise<void>((res) => (release = res)) }, 1);
    const r = reflect(ns);
    const started = r.start();
    await api.proxy.waitFor(lists, 1);
    r.stop();
    await expect(started).resolves.toBeUndefined();
    release();
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(api.proxy.count(on({ namespace: ns, resource: "configmaps" }))).toBe(1);
    expect(r.synced).toBe(false);
  });

  it("resync() relists at once, even during a backoff, and picks up what the watch missed", async () => {
    const ns = await createNamespace(admin);
    // Backoff of seconds: only the resync can bring the object in within the test's wait.
    const r = reflect(ns, api.client(), 10_000);
    await r.start();
    const watches = on({ verb: "watch", resource: "configmaps", namespace: ns });
    await api.proxy.waitFor(watches, 1);
    // Hold the next watch so an object created now reaches us only by a list.
    api.proxy.fault(watches, { kind: "fail", status: 500 }, 1000);
    api.proxy.cutWatches(watches);
    await createConfigMap(ns, "missed");
    const lists = api.proxy.count(on({ verb: "list", resource: "configmaps", namespace: ns }));
    r.resync();
    await eventually(() => r.get(`${ns}/missed`) !== undefined, 2000, "relisted");
    expect(api.proxy.count(on({ verb: "list", resource: "configmaps", namespace: ns }))).toBe(lists + 1);
  });
});
