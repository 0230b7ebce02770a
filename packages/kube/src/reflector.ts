/**
 * Keeps a local cache of one kind of object by list + watch, and tells
 * listeners what changed. Unlike client-node's informer it restarts itself:
 * every list (the first one too) and every watch is retried with jittered
 * backoff; a watch that ends resumes from the last resourceVersion seen, one
 * that expires (410 Gone) or keeps failing relists; bookmarks keep the
 * resourceVersion fresh, and a watchdog drops a watch on which nothing
 * arrives. A listener that throws is logged and counted; the watch goes on.
 */
import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import { type KubeClient, KubeError, type KubeObject, type ResourceRef, type WatchEvent } from "./kube-client.js";

export interface ReflectorOptions<T extends KubeObject = KubeObject> {
  resource: ResourceRef;
  labelSelector?: string;
  fieldSelector?: string;
  /** Server-side watch timeout; the watch is renewed after it. */
  watchSeconds?: number;
  /** First retry delay after a failure; doubles per failure up to `backoffMaxMs`, ×[0.5, 1.5) jitter. */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** A watch that ends normally sooner than this, with no event, counts as a failure (no busy loop). */
  minWatchMs?: number;
  /** For tests: the jitter's source. */
  random?: () => number;
  /**
   * What is kept of each object (its metadata must stay): a cache of Secrets
   * can hold a digest of their data instead of the data.
   */
  transform?: (obj: T) => T;
  /** Told of every failed list or watch (then retried as always). */
  onError?: (err: unknown) => void;
}

export type ReflectorEvents<T> = {
  add: [obj: T];
  update: [obj: T, old: T];
  delete: [obj: T];
};

export const objectKey = (o: KubeObject): string =>
  o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name;

type Change<T> = ["add", T] | ["update", T, T] | ["delete", T];

type ListReason = "start" | "expired" | "error" | "resync";

/** Why resync() aborted a watch. */
class ResyncRequest extends Error {}

export class Reflector<T extends KubeObject> extends EventEmitter<ReflectorEvents<T>> {
  readonly #cache = new Map<string, T>();
  #resourceVersion = "";
  /** Aborted by stop(): ends the loop, its sleeps and its watch. */
  readonly #stopped = new AbortController();
  /** Aborted by resync(): ends the current watch only. */
  #watchAbort = new AbortController();
  /** Aborted by resync(): ends a backoff sleep. */
  #wake = new AbortController();
  #running = false;
  #synced = false;
  readonly #syncedPromise: Promise<void>;
  #markSynced!: () => void;
  #failures = 0;
  #relistReason: ListReason | undefined = "start";
  #resyncRequested = false;

  constructor(
    private readonly client: KubeClient,
    private readonly opts: ReflectorOptions<T>,
    private readonly log: Logger,
  ) {
    super();
    this.setMaxListeners(0);
    this.#syncedPromise = new Promise((r) => {
      this.#markSynced = r;
    });
  }

  /** Starts the loop; resolves after the first complete list (or when stopped before one). */
  start(): Promise<void> {
    if (!this.#running && !this.#stopped.signal.aborted) {
      this.#running = true;
      void this.#loop();
    }
    return this.#syncedPromise;
  }

  stop(): void {
    this.#running = false;
    this.#stopped.abort();
    this.#markSynced();
  }

  /** True once a list has completed. */
  get synced(): boolean {
    return this.#synced;
  }

  /** Drops the current watch and relists: the cache is rebuilt from the API server. */
  resync(): void {
    if (!this.#running) return;
    this.#relistReason ??= "resync";
    this.#resyncRequested = true;
    this.#watchAbort.abort(new ResyncRequest("resync"));
    this.#wake.abort();
  }

  get(key: string): T | undefined {
    return this.#cache.get(key);
  }
  list(): T[] {
    return [...this.#cache.values()];
  }

  get #resourceName(): string {
    return this.opts.resource.plural;
  }

  async #loop(): Promise<void> {
    while (this.#running) {
      let events = 0;
      const started = performance.now();
      try {
        const reason = this.#relistReason;
        if (reason !== undefined) {
          this.#relistReason = undefined;
          this.#resyncRequested = false;
          try {
            await this.#list(reason);
          } catch (err) {
            this.#relistReason ??= reason;
            throw err;
          }
        }
        events = await this.#watch();
        if (events === 0 && performance.now() - started < (this.opts.minWatchMs ?? 1000)) {
          throw new Error("watch ended at once with no event");
        }
        this.#failures = 0;
      } catch (err) {
        if (!this.#running) return;
        if (this.#resyncRequested) {
          this.#resyncRequested = false;
          continue;
        }
        if (err instanceof KubeError && err.status === 410) {
          // Our resourceVersion is older than etcd keeps: only a fresh list can catch up.
          this.#relistReason = "expired";
          this.log.info({ resource: this.#resourceName }, "watch expired; relisting");
          continue;
        }
        this.#failures++;
        if (this.#failures > 2) this.#relistReason ??= "error";
        try {
          this.opts.onError?.(err);
        } catch {}
        const base = this.opts.backoffBaseMs ?? 200;
        const delay =
          Math.min(this.opts.backoffMaxMs ?? 30_000, base * 2 ** Math.min(this.#failures - 1, 16)) *
          (0.5 + (this.opts.random ?? Math.random)());
        this.log.warn(
          {
            resource: this.#resourceName,
            err: (err as Error).message,
            failures: this.#failures,
            synced: this.#synced,
            retryInMs: Math.round(delay),
          },
          this.#synced ? "watch failed" : "list failed; retrying",
        );
        this.#wake = new AbortController();
        await sleep(delay, AbortSignal.any([this.#stopped.signal, this.#wake.signal]));
      }
    }
  }

  async #list(reason: ListReason): Promise<void> {
    this.client.metrics.relists.inc({ resource: this.#resourceName, reason });
    const list = await this.client.list<T>(this.opts.resource, {
      labelSelector: this.opts.labelSelector,
      fieldSelector: this.opts.fieldSelector,
    });
    if (!this.#running) return;
    // Replace first, then tell: listeners that read the cache see the listed state.
    const changes: Change<T>[] = [];
    const seen = new Set<string>();
    for (const item of list.items) {
      const key = objectKey(item);
      seen.add(key);
      const change = this.#upsert(key, item);
      if (change) changes.push(change);
    }
    for (const [key, old] of this.#cache) {
      if (!seen.has(key)) {
        this.#cache.delete(key);
        changes.push(["delete", old]);
      }
    }
    this.#resourceVersion = list.metadata.resourceVersion;
    this.#synced = true;
    for (const change of changes) this.#tell(...change);
    this.#markSynced();
  }

  /** Stores `obj`; returns what to tell listeners, or undefined when nothing changed. */
  #upsert(key: string, received: T): Change<T> | undefined {
    const obj = this.opts.transform ? this.opts.transform(received) : received;
    const old = this.#cache.get(key);
    this.#cache.set(key, obj);
    if (old === undefined) return ["add", obj];
    if (old.metadata.resourceVersion !== obj.metadata.resourceVersion) return ["update", obj, old];
    return undefined;
  }

  /**
   * Calls each listener of one change in turn. A listener's exception is its
   * own bug, not the watch's: it is logged and counted, and the other
   * listeners and the watch go on.
   */
  #tell(...[event, ...args]: Change<T>): void {
    for (const listener of this.listeners(event) as ((...a: unknown[]) => void)[]) {
      try {
        listener.apply(this, args);
      } catch (err) {
        this.client.metrics.handlerErrors.inc({ resource: this.#resourceName });
        this.log.error(
          { resource: this.#resourceName, event, err: (err as Error)?.stack ?? String(err) },
          "a watch event handler threw; the event is skipped for that handler",
        );
      }
    }
  }

  /** One watch request; resolves with the number of events received when the server ends it. */
  async #watch(): Promise<number> {
    this.#watchAbort = new AbortController();
    const signal = AbortSignal.any([this.#stopped.signal, this.#watchAbort.signal]);
    const seconds = this.opts.watchSeconds ?? 240 + Math.floor(Math.random() * 60);
    let events = 0;
    await this.client.watch<T>(
      this.opts.resource,
      {
        resourceVersion: this.#resourceVersion,
        allowWatchBookmarks: true,
        timeoutSeconds: seconds,
        labelSelector: this.opts.labelSelector,
        fieldSelector: this.opts.fieldSelector,
      },
      (e: WatchEvent<T>) => {
        events++;
        this.#onEvent(e);
      },
      { signal, idleTimeoutMs: (seconds + 30) * 1000 },
    );
    return events;
  }

  #onEvent(e: WatchEvent<T>): void {
    if (e.type === "ERROR") {
      const status = e.object as unknown as { code?: number; reason?: string; message?: string };
      throw new KubeError(status.code ?? 500, status.reason ?? "WatchError", status.message ?? "watch error");
    }
    if (!this.#running) return;
    const rv = e.object.metadata?.resourceVersion;
    if (e.type === "BOOKMARK") {
      if (rv) this.#resourceVersion = rv;
      return;
    }
    const key = objectKey(e.object);
    if (e.type === "DELETED") {
      const old = this.#cache.get(key);
      this.#cache.delete(key);
      if (rv) this.#resourceVersion = rv;
      this.#tell("delete", old ?? e.object);
      return;
    }
    const change = this.#upsert(key, e.object);
    if (rv) this.#resourceVersion = rv;
    if (change) this.#tell(...change);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
