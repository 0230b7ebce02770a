/**
 * API keys in local mode (ADR 0011): their records — hashes, never keys — in
 * `<data dir>/keys.json` (mode 0600), read at start and rewritten atomically
 * on every change. Lookups are served from memory, so a revocation holds from
 * the next request on.
 */
import { chmod, mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type ApiKeyRecord, newApiKey, parseApiKeyRecord } from "@faas/api";
import type { ApiKeyInfo } from "@faas/gateway";
import type { Logger } from "pino";

export const keysFile = (dataDir: string): string => join(dataDir, "keys.json");

export class KeyStore {
  readonly #path: string;
  readonly #byId = new Map<string, ApiKeyRecord>();
  /** Writes one at a time, each with the state after its own change. */
  #writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly dataDir: string,
    private readonly log: Logger,
  ) {
    this.#path = keysFile(dataDir);
  }

  async load(): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.#path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      throw err;
    }
    // Whoever made the file, it holds credentials' hashes: owner only.
    await chmod(this.#path, 0o600);
    const items = (JSON.parse(text) as { keys?: unknown[] }).keys ?? [];
    for (const item of items) {
      const record = parseApiKeyRecord(item);
      if (record === undefined) this.log.error({ path: this.#path }, "skipping an unreadable API key record");
      else this.#byId.set(record.id, record);
    }
  }

  get(fn: string, id: string): ApiKeyRecord | undefined {
    const r = this.#byId.get(id);
    return r?.function === fn ? r : undefined;
  }

  count(fn: string): number {
    let n = 0;
    for (const r of this.#byId.values()) if (r.function === fn) n++;
    return n;
  }

  list(fn?: string): ApiKeyInfo[] {
    return [...this.#byId.values()]
      .filter((r) => fn === undefined || r.function === fn)
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id))
      .map(({ id, function: f, createdAt }) => ({ id, function: f, createdAt }));
  }

  async create(fn: string): Promise<{ key: string; info: ApiKeyInfo }> {
    const { key, record } = newApiKey(fn);
    this.#byId.set(record.id, record);
    await this.#save();
    return { key, info: { id: record.id, function: fn, createdAt: record.createdAt } };
  }

  async revoke(id: string): Promise<boolean> {
    if (!this.#byId.delete(id)) return false;
    await this.#save();
    return true;
  }

  /** A deleted function's keys go with it: a new function of the same name starts with none. */
  async removeFunction(fn: string): Promise<void> {
    let changed = false;
    for (const [id, r] of this.#byId) if (r.function === fn && this.#byId.delete(id)) changed = true;
    if (changed) await this.#save();
  }

  #save(): Promise<void> {
    const text = `${JSON.stringify({ keys: [...this.#byId.values()] }, null, 2)}\n`;
    const write = async (): Promise<void> => {
      await mkdir(this.dataDir, { recursive: true, mode: 0o700 });
      const tmp = `${this.#path}.${process.pid}.tmp`;
      await writeFile(tmp, text, { mode: 0o600 });
      await rename(tmp, this.#path);
    };
    this.#writing = this.#writing.then(write, write);
    return this.#writing;
  }
}
