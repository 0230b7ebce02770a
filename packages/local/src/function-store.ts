/**
 * Functions deployed in local mode, one JSON file each under the data
 * directory, so they come back after a restart. Writes are atomic (rename).
 */
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type FunctionResource, parseFunction } from "@faas/api";
import type { Logger } from "pino";

export class FunctionStore {
  readonly #dir: string;
  constructor(
    dataDir: string,
    private readonly log: Logger,
  ) {
    this.#dir = join(dataDir, "functions");
  }

  async loadAll(): Promise<FunctionResource[]> {
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    const out: FunctionResource[] = [];
    for (const name of (await readdir(this.#dir)).filter((n) => n.endsWith(".json")).sort()) {
      const path = join(this.#dir, name);
      try {
        out.push(parseFunction(JSON.parse(await readFile(path, "utf8")), path));
      } catch (err) {
        this.log.error({ path, err: (err as Error).message }, "skipping an unreadable stored function");
      }
    }
    return out;
  }

  async save(fn: FunctionResource): Promise<void> {
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    const path = join(this.#dir, `${fn.metadata.name}.json`);
    const tmp = `${path}.${process.pid}.tmp`;
    await writeFile(tmp, `${JSON.stringify(fn, null, 2)}\n`, { mode: 0o600 });
    await rename(tmp, path);
  }

  async remove(name: string): Promise<void> {
    await rm(join(this.#dir, `${name}.json`), { force: true });
  }
}
