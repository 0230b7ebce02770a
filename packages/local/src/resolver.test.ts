import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FaasError, makeFunction } from "@faas/api";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MOUNT_ROOT_ENV, Resolver } from "./resolver.js";
import { ValueStore } from "./value-store.js";

describe("ValueStore and Resolver", () => {
  let dir: string;
  let stores: { secret: ValueStore; config: ValueStore };
  let resolver: Resolver;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "faas-values-"));
    stores = { secret: new ValueStore(dir, "secret"), config: new ValueStore(dir, "config") };
    resolver = new Resolver(dir, stores);
    await stores.secret.set("db", { password: "pw1", user: "app", "not-a-var": "x", FAAS_PORT: "1" });
    await stores.config.set("settings", { MODE: "blue", user: "from-config" });
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("stores 0600 files, lists keys only, merges or replaces keys, and reloads", async () => {
    expect((await stat(join(dir, "secrets.json"))).mode & 0o777).toBe(0o600);
    expect(stores.secret.list()).toEqual([{ name: "db", keys: ["FAAS_PORT", "not-a-var", "password", "user"] }]);
    await stores.secret.set("db", { password: "pw2" });
    expect(stores.secret.get("db")?.user).toBe("app");
    await stores.secret.set("db", { password: "pw3" }, true);
    const again = new ValueStore(dir, "secret");
    await again.load();
    expect(again.get("db")).toEqual({ password: "pw3" });
    await expect(stores.secret.set("Bad/Name", { a: "b" })).rejects.toThrow(/lowercase/);
    await expect(stores.secret.set("ok", { "bad key": "b" })).rejects.toThrow(/key "bad key"/);
    expect(await stores.secret.delete("nope")).toBe(false);
    expect(await stores.secret.delete("db")).toBe(true);
    expect(stores.secret.list()).toEqual([]);
  });

  it("resolves env: envFrom first, env entries win; skips invalid and FAAS_ keys", async () => {
    const fn = makeFunction("f", {
      runtime: "python",
      code: "x",
      envFrom: [{ secretRef: { name: "db" } }, { configMapRef: { name: "settings" } }],
      env: [
        { name: "user", value: "literal" },
        { name: "PW", valueFrom: { secretKeyRef: { name: "db", key: "password" } } },
        { name: "M", valueFrom: { configMapKeyRef: { name: "settings", key: "MODE" } } },
      ],
    });
    const { load, hash } = await resolver.resolve(fn);
    expect(load.env).toEqual({ password: "pw1", user: "literal", MODE: "blue", PW: "pw1", M: "blue" });
    await stores.secret.set("db", { password: "pw2" });
    const rotated = await resolver.resolve(fn);
    expect(rotated.hash).not.toBe(hash);
    expect(rotated.load.env.PW).toBe("pw2");
  });

  it("writes a secret mount once per version, 0400 files, and prunes other versions", async () => {
    const fn = makeFunction("m", { runtime: "python", code: "x", secrets: [{ name: "db", mountPath: "/etc/db" }] });
    const first = await resolver.resolve(fn);
    const root = first.load.env[MOUNT_ROOT_ENV] as string;
    expect(root).toBe(join(dir, "mounts", "m", first.hash));
    expect(await readFile(join(root, "etc/db/password"), "utf8")).toBe("pw1");
    expect((await stat(join(root, "etc/db/password"))).mode & 0o777).toBe(0o400);
    await stores.secret.set("db", { password: "pw2" });
    const second = await resolver.resolve(fn);
    await resolver.prune("m", new Set([second.hash]));
    await expect(stat(root)).rejects.toThrow();
    expect(await readFile(join(second.load.env[MOUNT_ROOT_ENV] as string, "etc/db/password"), "utf8")).toBe("pw2");
  });

  it("names the field and the missing secret or key, never a value", async () => {
    const missing = makeFunction("x", {
      runtime: "python",
      code: "x",
      env: [{ name: "A", valueFrom: { secretKeyRef: { name: "db", key: "nope" } } }],
    });
    const err = await resolver.resolve(missing).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FaasError);
    expect((err as FaasError).code).toBe("INVALID_SPEC");
    expect((err as FaasError).message).toBe(
      'spec.env.0.valueFrom.secretKeyRef: secret db has no key "nope" (`faas secret list` shows its keys)',
    );
    const none = makeFunction("y", { runtime: "python", code: "x", envFrom: [{ configMapRef: { name: "gone" } }] });
    await expect(resolver.resolve(none)).rejects.toThrow(/^spec\.envFrom\.0\.configMapRef: no config named "gone"/);
    expect(resolver.refersTo(none, "config", "gone")).toBe(true);
    expect(resolver.refersTo(none, "secret", "gone")).toBe(false);
  });
});
