import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { apiKeyId, apiKeyMatches } from "@faas/api";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { KeyStore, keysFile } from "./key-store.js";

const log = pino({ level: "silent" });
const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "faas-keys-"));
  dirs.push(dir);
  return dir;
}

describe("KeyStore", () => {
  it("stores only hashes, in a file only its owner can read, and reads them back after a restart", async () => {
    const dir = await tempDir();
    const store = new KeyStore(dir, log);
    await store.load();
    const { key, info } = await store.create("hello");
    expect(info.id).toBe(apiKeyId(key));
    const text = await readFile(keysFile(dir), "utf8");
    expect(text).not.toContain(key);
    expect(text).not.toContain(key.slice(20));
    expect((await stat(keysFile(dir))).mode & 0o777).toBe(0o600);

    const again = new KeyStore(dir, log);
    await again.load();
    const record = again.get("hello", info.id);
    expect(record && apiKeyMatches(key, record.sha256)).toBe(true);
    expect(again.get("other", info.id)).toBeUndefined();
    expect(again.list()).toEqual([info]);
    expect(again.list("other")).toEqual([]);
    expect(again.count("hello")).toBe(1);
  });

  it("revokes one key, and a removed function's keys all at once", async () => {
    const dir = await tempDir();
    const store = new KeyStore(dir, log);
    const a = await store.create("f");
    const b = await store.create("f");
    const c = await store.create("g");
    expect(await store.revoke(a.info.id)).toBe(true);
    expect(await store.revoke(a.info.id)).toBe(false);
    expect(store.get("f", a.info.id)).toBeUndefined();
    expect(store.count("f")).toBe(1);
    await store.removeFunction("f");
    expect(store.get("f", b.info.id)).toBeUndefined();
    const reloaded = new KeyStore(dir, log);
    await reloaded.load();
    expect(reloaded.list().map((k) => k.id)).toEqual([c.info.id]);
  });

  it("tightens a keys file that others could read", async () => {
    const dir = await tempDir();
    await writeFile(keysFile(dir), '{"keys":[]}\n', { mode: 0o644 });
    await new KeyStore(dir, log).load();
    expect((await stat(keysFile(dir))).mode & 0o777).toBe(0o600);
  });

  it("keeps every key when many are created at once", async () => {
    const dir = await tempDir();
    const store = new KeyStore(dir, log);
    const made = await Promise.all(Array.from({ length: 20 }, () => store.create("f")));
    const reloaded = new KeyStore(dir, log);
    await reloaded.load();
    expect(reloaded.count("f")).toBe(made.length);
  });
});
