/**
 * A work queue of object keys (`namespace/name`), as in client-go: a key is
 * queued at most once, never processed by two workers at once (an add while it
 * runs marks it dirty and it runs again after), and a handler that throws is
 * retried after an exponential backoff with a cap.
 */
export interface WorkQueueOptions {
  concurrency: number;
  retryBaseMs: number;
  retryMaxMs: number;
}

/** What a handler may ask for: run this key again after a delay (a scheduled re-check). */
export type HandlerResult = { requeueAfterMs?: number } | undefined;

export type KeyHandler = (key: string) => Promise<HandlerResult>;

export class ExponentialBackoff {
  readonly #failures = new Map<string, number>();
  constructor(
    private readonly baseMs: number,
    private readonly maxMs: number,
  ) {}

  /** The delay before the next retry of `key`, counting this failure. */
  next(key: string): number {
    const n = this.#failures.get(key) ?? 0;
    this.#failures.set(key, n + 1);
    return Math.min(this.maxMs, this.baseMs * 2 ** Math.min(n, 30));
  }

  failures(key: string): number {
    return this.#failures.get(key) ?? 0;
  }

  forget(key: string): void {
    this.#failures.delete(key);
  }
}

export class WorkQueue {
  readonly #queue: string[] = [];
  readonly #queued = new Set<string>();
  readonly #processing = new Set<string>();
  readonly #dirty = new Set<string>();
  readonly #timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  readonly #idleWaiters: (() => void)[] = [];
  readonly backoff: ExponentialBackoff;
  #paused: boolean;
  #closed = false;

  constructor(
    private readonly handler: KeyHandler,
    private readonly opts: WorkQueueOptions,
    private readonly onError: (key: string, err: unknown, retryInMs: number) => void = () => {},
    paused = false,
  ) {
    this.backoff = new ExponentialBackoff(opts.retryBaseMs, opts.retryMaxMs);
    this.#paused = paused;
  }

  get pending(): number {
    return this.#queue.length;
  }

  get active(): number {
    return this.#processing.size;
  }

  add(key: string): void {
    if (this.#closed) return;
    if (this.#processing.has(key)) {
      this.#dirty.add(key);
      return;
    }
    if (this.#queued.has(key)) return;
    this.#queued.add(key);
    this.#queue.push(key);
    this.#pump();
  }

  /** Adds `key` after `delayMs`; an earlier pending delayed add wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.#closed) return;
    const at = Date.now() + delayMs;
    const existing = this.#timers.get(key);
    if (existing && existing.at <= at) return;
    if (existing) clearTimeout(existing.timer);
    const timer = setTimeout(() => {
      this.#timers.delete(key);
      this.add(key);
    }, delayMs);
    timer.unref();
    this.#timers.set(key, { at, timer });
  }

  /** Drops pending retries and backoff state of a key (its object is gone). */
  forget(key: string): void {
    this.backoff.forget(key);
    const t = this.#timers.get(key);
    if (t) clearTimeout(t.timer);
    this.#timers.delete(key);
  }

  /** Stops handing out keys (running handlers finish); adds still queue up. */
  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    this.#paused = false;
    this.#pump();
  }

  /** Resolves when nothing is running and nothing is queued (or the queue is paused). */
  idle(): Promise<void> {
    if (this.#processing.size === 0 && (this.#queue.length === 0 || this.#paused)) return Promise.resolve();
    return new Promise((r) => this.#idleWaiters.push(r));
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#paused = true;
    for (const t of this.#timers.values()) clearTimeout(t.timer);
    this.#timers.clear();
    await this.idle();
  }

  #pump(): void {
    while (!this.#paused && this.#processing.size < this.opts.concurrency && this.#queue.length > 0) {
      const key = this.#queue.shift() as string;
      this.#queued.delete(key);
      this.#processing.add(key);
      void this.#run(key);
    }
    if (this.#processing.size === 0 && (this.#queue.length === 0 || this.#paused)) {
      for (const w of this.#idleWaiters.splice(0)) w();
    }
  }

  async #run(key: string): Promise<void> {
    try {
      const result = await this.handler(key);
      this.backoff.forget(key);
      if (result?.requeueAfterMs !== undefined) this.addAfter(key, result.requeueAfterMs);
    } catch (err) {
      const delay = this.backoff.next(key);
      this.onError(key, err, delay);
      this.addAfter(key, delay);
    } finally {
      this.#processing.delete(key);
      if (this.#dirty.delete(key)) this.add(key);
      this.#pump();
    }
  }
}
