/**
 * API keys on Kubernetes against a real API server: the CLI's writes to the
 * Secret `faas-api-keys` (one entry per key, concurrent writers kept apart)
 * and the gateway's cache of it, which follows creations and revocations by
 * watch and ignores keys of a Function that was deleted and made again.
 */
import { API_KEYS_LABEL, API_KEYS_SECRET, apiKeyMatches, newApiKey } from "@faas/api";
import {
  type KubeClient,
  type KubeObject,
  RESOURCES,
  readApiKeys,
  removeFunctionApiKeys,
  revokeApiKey,
  storeApiKey,
} from "@faas/kube";
import { ApiKeyCache } from "@faas/kube-backend";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { on } from "./fault-proxy.js";
import { ApiServer, apiServerSkipReason } from "./fixture.js";
import { createFunction, createNamespace, eventually } from "./scene.js";

const skip = apiServerSkipReason();
const log = pino({ level: process.env.FAAS_TEST_LOG ?? "silent" });

describe.skipIf(skip !== undefined)("API keys against a real API server", () => {
  let api: ApiServer;
  let admin: KubeClient;
  const caches: ApiKeyCache[] = [];

  beforeAll(async () => {
    api = await ApiServer.start();
    admin = api.directClient();
  }, 60_000);
  afterAll(async () => {
    for (const c of caches) c.stop();
    await api?.stop();
  });

  /** The gateway's cache, with the Function uids it would take from its Function watch. */
  async function cacheFor(ns: string): Promise<{ cache: ApiKeyCache; refreshUid(fn: string): Promise<void> }> {
    const client = api.client();
    const uids = new Map<string, string | undefined>();
    const cache = new ApiKeyCache(client, ns, (fn) => uids.get(fn), log);
    caches.push(cache);
    await cache.start();
    return {
      cache,
      async refreshUid(fn) {
        const obj = await client.find<KubeObject>({ ...RESOURCES.functions, namespace: ns, name: fn });
        uids.set(fn, obj?.metadata.uid);
      },
    };
  }

  it("creates the labelled Secret with hashes only, adds to it, and the cache follows", async () => {
    const ns = await createNamespace(admin, "keys");
    const fn = await createFunction(admin, ns, "locked", { auth: "apiKey" });
    const { cache, refreshUid } = await cacheFor(ns);
    await refreshUid("locked");
    const a = newApiKey("locked", { functionUid: fn.metadata.uid });
    const b = newApiKey("locked", { functionUid: fn.metadata.uid });
    await storeApiKey(admin, ns, a.record);
    await storeApiKey(admin, ns, b.record);

    const secret = await admin.get<KubeObject & { data: Record<string, string> }>({
      ...RESOURCES.secrets,
      namespace: ns,
      name: API_KEYS_SECRET,
    });
    expect(secret.metadata.labels?.[API_KEYS_LABEL]).toBe("true");
    expect(Object.keys(secret.data).sort()).toEqual([a.record.id, b.record.id].sort());
    const raw = Object.values(secret.data)
      .map((v) => Buffer.from(v, "base64").toString())
      .join("");
    expect(raw).not.toContain(a.key);
    expect(raw).not.toContain(b.key);

    await eventually(() => cache.apiKeyCount("locked") === 2, 5000, "both keys in the cache");
    const record = cache.apiKey("locked", a.record.id);
    expect(record && apiKeyMatches(a.key, record.sha256)).toBe(true);
    expect(cache.apiKey("other", a.record.id)).toBeUndefined();
    expect((await readApiKeys(admin, ns)).map((r) => r.id).sort()).toEqual([a.record.id, b.record.id].sort());
  });

  it("revokes one key: the cache drops it within moments and keeps the other", async () => {
    const ns = await createNamespace(admin, "keys");
    const fn = await createFunction(admin, ns, "locked", { auth: "apiKey" });
    const { cache, refreshUid } = await cacheFor(ns);
    await refreshUid("locked");
    const a = newApiKey("locked", { functionUid: fn.metadata.uid });
    const b = newApiKey("locked", { functionUid: fn.metadata.uid });
    await storeApiKey(admin, ns, a.record);
    await storeApiKey(admin, ns, b.record);
    await eventually(() => cache.apiKeyCount("locked") === 2, 5000, "both keys in the cache");
    const t0 = performance.now();
    expect(await revokeApiKey(admin, ns, a.record.id)).toBe(true);
    await eventually(() => cache.apiKey("locked", a.record.id) === undefined, 5000, "the revoked key gone");
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(cache.apiKey("locked", b.record.id)).toBeDefined();
    expect(await revokeApiKey(admin, ns, a.record.id)).toBe(false);
    await expect(revokeApiKey(admin, ns, "../x")).rejects.toThrow(/not an API key id/);
  });

  it("keeps every key when several writers create the Secret at once", async () => {
    const ns = await createNamespace(admin, "keys");
    const made = Array.from({ length: 6 }, () => newApiKey("f"));
    await Promise.all(made.map((k) => storeApiKey(api.directClient(), ns, k.record)));
    expect((await readApiKeys(admin, ns)).length).toBe(6);
  });

  it("a gateway that may not read the Secret (403) still starts, refuses every key, and reads them once allowed", async () => {
    const ns = await createNamespace(admin, "keys");
    const fn = await createFunction(admin, ns, "locked", { auth: "apiKey" });
    const k = newApiKey("locked", { functionUid: fn.metadata.uid });
    await storeApiKey(admin, ns, k.record);
    const forbidden = api.proxy.fault(on({ resource: "secrets", namespace: ns }), { kind: "fail", status: 403 });
    const client = api.client();
    const cache = new ApiKeyCache(client, ns, () => fn.metadata.uid, log);
    caches.push(cache);
    try {
      await cache.start();
      expect(cache.synced).toBe(true);
      expect(cache.apiKey("locked", k.record.id)).toBeUndefined();
    } finally {
      forbidden.remove();
    }
    await eventually(() => cache.apiKey("locked", k.record.id) !== undefined, 20_000, "the key once readable");
  }, 30_000);

  it("removes a deleted Function's keys, and only those: not another function's, not a newer Function's of the same name", async () => {
    const ns = await createNamespace(admin, "keys");
    const gone = await createFunction(admin, ns, "gone", { auth: "apiKey" });
    const other = await createFunction(admin, ns, "other", { auth: "apiKey" });
    const mine = [newApiKey("gone", { functionUid: gone.metadata.uid }), newApiKey("gone")];
    const othersKey = newApiKey("other", { functionUid: other.metadata.uid });
    for (const k of [...mine, othersKey]) await storeApiKey(admin, ns, k.record);
    // Entries that are no key records (not JSON, a record of another shape, an id that is not its name): left alone.
    const junk = {
      "not-json": Buffer.from("{gone").toString("base64"),
      "wrong-shape": Buffer.from(JSON.stringify({ function: "gone" })).toString("base64"),
      ["0".repeat(16)]: Buffer.from(JSON.stringify({ ...mine[0]?.record })).toString("base64"),
    };
    await admin.mergePatch({ ...RESOURCES.secrets, namespace: ns, name: API_KEYS_SECRET }, { data: junk }, "test");
    await admin.delete({ ...RESOURCES.functions, namespace: ns, name: "gone" });
    // Made again under the name, with a key of its own, before the old one's keys are cleaned up.
    const again = await createFunction(admin, ns, "gone", { auth: "apiKey" });
    const newer = newApiKey("gone", { functionUid: again.metadata.uid });
    await storeApiKey(admin, ns, newer.record);

    expect(await removeFunctionApiKeys(admin, ns, "gone", gone.metadata.uid)).toBe(2);
    const left = (await readApiKeys(admin, ns)).map((r) => r.id).sort();
    expect(left).toEqual([othersKey.record.id, newer.record.id].sort());
    const stored = await admin.get<KubeObject & { data: Record<string, string> }>({
      ...RESOURCES.secrets,
      namespace: ns,
      name: API_KEYS_SECRET,
    });
    for (const id of Object.keys(junk)) expect(stored.data[id]).toBe(junk[id as keyof typeof junk]);
    // Nothing (left) to remove: no write.
    expect(await removeFunctionApiKeys(admin, ns, "gone", gone.metadata.uid)).toBe(0);
    // A namespace without the Secret: nothing to do.
    expect(await removeFunctionApiKeys(admin, await createNamespace(admin, "keys"), "gone", "x")).toBe(0);
  });

  it("ignores keys made for an earlier Function of the same name", async () => {
    const ns = await createNamespace(admin, "keys");
    const first = await createFunction(admin, ns, "f", { auth: "apiKey" });
    const { cache, refreshUid } = await cacheFor(ns);
    const old = newApiKey("f", { functionUid: first.metadata.uid });
    await storeApiKey(admin, ns, old.record);
    await refreshUid("f");
    await eventually(() => cache.apiKeyCount("f") === 1, 5000, "the key in the cache");
    await admin.delete({ ...RESOURCES.functions, namespace: ns, name: "f" });
    await createFunction(admin, ns, "f", { auth: "apiKey" });
    await refreshUid("f");
    expect(cache.apiKey("f", old.record.id)).toBeUndefined();
    expect(cache.apiKeyCount("f")).toBe(0);
  });
});
