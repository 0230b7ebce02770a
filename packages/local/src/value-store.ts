/**
 * Local mode's Secrets and ConfigMaps: named sets of key/value pairs that
 * functions refer to (`valueFrom`, `envFrom`, `secrets` mounts), kept in one
 * file per kind under the data directory (`secrets.json`, `configs.json`),
 * mode 0600 in a 0700 directory, written atomically. Values leave this module
 * only towards runners; listings name keys, never values.
 */
import { chmod, mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { DATA_KEY_PATTERN, FaasError, OBJECT_NAME_PATTERN } from "@faas/api";

import type { ValueKind } from "@faas/gateway";

export type { ValueKind };
export const VALUE_KINDS: readonly ValueKind[] = ["secret", "config"];

/** What `faas secret list` shows: names and keys. */
export interface ValueSummary {
  name: string;
  keys: string[];
}

const FILE: Record<ValueKind, string> = { secret: "secrets.json", config: "configs.json" };
const MAX_VALUE_BYTES = 1024 * 1024;

export const valueStoreFile = (dataDir: string, kind: ValueKind): string => join(dataDir, FILE[kind]);

/** Checks a name and its data the way the API server would check a Secret's. */
export function validateValues(kind: ValueKind, name: string, data: Record<string, string>): void {
  if (name.length > 253 || !OBJECT_NAME_PATTERN.test(name)) {
    throw new FaasError(
      "INVALID_SPEC",
      `${kind} name ${JSON.stringify(name)}: must be lowercase letters, digits, '-' and '.' (at most 253)`,
    );
  }
  let bytes = 0;
  for (const [key, value] of Object.entries(data)) {
    if (key.length > 253 || !DATA_KEY_PATTERN.test(key)) {
      throw new FaasError(
        "INVALID_SPEC",
        `${kind} ${name}: key ${JSON.stringify(key)} must be letters, digits, '-', '_' or '.'`,
      );
    }
    if (typeof value !== "string")
      throw new FaasError("INVALID_SPEC", `${kind} ${name}: the value of ${key} must be a string`);
    bytes += Buffer.byteLength(value);
  }
  if (bytes > MAX_VALUE_BYTES) throw new FaasError("INVALID_SPEC", `${kind} ${name}: values total more than 1 MiB`);
}

export class ValueStore {
  readonly #file: string;
  #values = new Map<string, Record<string, string>>();

  constructor(
    private readonly dataDir: string,
    readonly kind: ValueKind,
  ) {
    this.#file = valueStoreFile(dataDir, kind);
  }

  async load(): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.#file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      throw err;
    }
    // Tightened on every start, whoever created the file.
    await chmod(this.#file, 0o600);
    const parsed = JSON.parse(text) as Record<string, Record<string, string>>;
    this.#values = new Map(Object.entries(parsed));
  }

  get(name: string): Readonly<Record<string, string>> | undefined {
    return this.#values.get(name);
  }

  list(): ValueSummary[] {
    return [...this.#values.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, data]) => ({ name, keys: Object.keys(data).sort() }));
  }

  /** Sets keys of `name` (creating it); with `replace`, the keys given are all it keeps. */
  async set(name: string, data: Record<string, string>, replace = false): Promise<ValueSummary> {
    validateValues(this.kind, name, data);
    const next = replace ? { ...data } : { ...this.#values.get(name), ...data };
    validateValues(this.kind, name, next);
    this.#values.set(name, next);
    await this.#save();
    return { name, keys: Object.keys(next).sort() };
  }

  /** Deletes `name`, or only the given keys of it; false when there was nothing to delete. */
  async delete(name: string, keys: readonly string[] = []): Promise<boolean> {
    const current = this.#values.get(name);
    if (current === undefined) return false;
    if (keys.length === 0) {
      this.#values.delete(name);
    } else {
      if (!keys.some((k) => k in current)) return false;
      const next = { ...current };
      for (const k of keys) delete next[k];
      this.#values.set(name, next);
    }
    await this.#save();
    return true;
  }

  async #save(): Promise<void> {
    await mkdir(this.dataDir, { recursive: true, mode: 0o700 });
    const tmp = `${this.#file}.${process.pid}.tmp`;
    await writeFile(tmp, `${JSON.stringify(Object.fromEntries(this.#values), null, 2)}\n`, { mode: 0o600 });
    await rename(tmp, this.#file);
  }
}
