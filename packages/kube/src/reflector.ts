/**
 * Keeps a local cache of one kind of object by list + watch, and tells
 * listeners what changed. Unlike client-node's informer it restarts itself:
 * jittered backoff after errors, a relist on 410 Gone, bookmarks, and a
 * watchdog that drops a watch on which nothing arrives.
 */
import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import { type KubeClient, KubeError, type KubeObject, type ResourceRef, type WatchEvent } from "./kube-client.js";

export interface ReflectorOptions {
  resource: ResourceRef;
  labelSelector?: string;
  fieldSelector?: string;
  /** Server-side watch timeout; the watch is renewed after it. */
  watchSeconds?: number;
}

export type ReflectorEvents<T> = {
  add: [obj: T];
  update: [obj: T, old: T];
  delete: [obj: T];
};

export const objectKey = (o: KubeObject): string =>
  o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name;

export class Reflector<T extends KubeObject> extends EventEmitter<ReflectorEvents<T>> {
  readonly #cache = new Map<string, T>();
  #resourceVersion = "";
  #abort = new AbortController();
  #running = false;
  #synced: Promise<void>;
  #markSynced!: () => void;
  #failures = 0;

  constructor(
    private readonly client: KubeClient,
    private readonly opts: ReflectorOptions,
    private readonly log: Logger,
  ) {
    super();
    this.setMaxListeners(0);
    this.#synced = new Promise((r) => {
      this.#markSynced = r;
    });
  }

  /** Starts the loop; resolves after the first complete list. */
  start(): Promise<void> {
    if (!this.#running) {
      this.#running = true;
      void this.#loop();
    }
    return this.#synced;
  }

  stop(): void {
    this.#running = false;
    this.#abort.abort();
  }

  get(key: string): T | undefined {
    return this.#cache.get(key);
  }
  list(): T[] {
    return [...this.#cache.values()];
  }

  async #loop(): Promise<void> {
    let needList = true;
    while (this.#running) {
      try {
        if (needList) {
          await this.#list();
          needList = false;
        }
        await this.#watch();
        this.#failures = 0;
      } catch (err) {
        if (!this.#running) return;
        if (err instanceof KubeError && err.status === 410) {
          needList = true;
          continue;
        }
        this.#failures++;
        needList = this.#failures > 2;
        const delay = Math.min(30_000, 200 * 2 ** Math.min(this.#failures, 8)) * (0.5 + Math.random());
        this.log.warn(
          { resource: this.opts.resource.plural, err: (err as Error).message, retryInMs: Math.round(delay) },
          "watch failed",
        );
        await sleep(delay, this.#abort.signal);
      }
    }
  }

  async #list(): Promise<void> {
    const list = await this.client.list<T>(this.opts.resource, {
      labelSelector: this.opts.labelSelector,
      fieldSelector: this.opts.fieldSelector,
    });
    const seen = new Set<string>();
    for (const item of list.items) {
      const key = objectKey(item);
      seen.add(key);
      this.#upsert(key, item);
    }
    for (const [key, old] of this.#cache) {
      if (!seen.has(key)) {
        this.#cache.delete(key);
        this.emit("delete", old);
      }
    }
    this.#resourceVersion = list.metadata.resourceVersion;
    this.#markSynced();
  }

  #upsert(key: string, obj: T): void {
    const old = this.#cache.get(key);
    this.#cache.set(key, obj);
    if (old === undefined) this.emit("add", obj);
    else if (old.metadata.resourceVersion !== obj.metadata.resourceVersion) this.emit("update", obj, old);
  }

  async #watch(): Promise<void> {
    this.#abort = new AbortController();
    const seconds = this.opts.watchSeconds ?? 240 + Math.floor(Math.random() * 60);
    await this.client.watch<T>(
      this.opts.resource,
      {
        resourceVersion: this.#resourceVersion,
        allowWatchBookmarks: true,
        timeoutSeconds: seconds,
        labelSelector: this.opts.labelSelector,
        fieldSelector: this.opts.fieldSelector,
      },
      (e: WatchEvent<T>) => this.#onEvent(e),
      { signal: this.#abort.signal, idleTimeoutMs: (seconds + 30) * 1000 },
    );
  }

  #onEvent(e: WatchEvent<T>): void {
    if (e.type === "ERROR") {
      const status = e.object as unknown as { code?: number; message?: string };
      throw new KubeError(status.code ?? 500, "WatchError", status.message ?? "watch error");
    }
    const rv = e.object.metadata?.resourceVersion;
    if (rv) this.#resourceVersion = rv;
    if (e.type === "BOOKMARK") return;
    const key = objectKey(e.object);
    if (e.type === "DELETED") {
      const old = this.#cache.get(key);
      this.#cache.delete(key);
      this.emit("delete", old ?? e.object);
      return;
    }
    this.#upsert(key, e.object);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });
}
