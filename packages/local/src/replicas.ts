/**
 * A function's runner processes: starting replicas (a pooled runner claimed
 * and specialized), routing them, replacing crashed ones, and retiring them
 * (out of routing first, stopped once their requests are done). Owns every
 * runner it claimed from the pool, so that stopping leaves none behind.
 */
import { FaasError, type LoadSpec } from "@faas/api";
import { type ColdStep, type Endpoint, LoadSuperseded, type LoadView, type ScaleUpResult } from "@faas/gateway";
import type { Logger } from "pino";
import type { LocalFunction } from "./local-function.js";
import type { LocalMetrics } from "./local-metrics.js";
import type { LogStore } from "./log-store.js";
import type { RunnerExit, RunnerProcess } from "./runner-process.js";
import type { WarmPool } from "./warm-pool.js";

export interface ReplicaHost {
  /** The gateway's view of traffic. */
  load(): LoadView;
  /** Whether `f` is still the live record of its function (not removed or replaced). */
  isCurrent(f: LocalFunction): boolean;
  stopped(): boolean;
  endpointsChanged(fn: string, endpoints: readonly Endpoint[]): void;
  /** A replica is loading `fn`'s code and holds invocations meanwhile (BackendListener.endpointLoading). */
  endpointLoading(fn: string, endpoint: Endpoint, loaded: Promise<void>, steps?: readonly ColdStep[]): void;
}

export class Replicas {
  /** Every runner claimed from the pool and still running: loading, routed or draining. */
  readonly #owned = new Set<RunnerProcess>();

  constructor(
    private readonly pool: WarmPool,
    private readonly logs: LogStore,
    private readonly metrics: LocalMetrics,
    private readonly host: ReplicaHost,
    private readonly log: Logger,
  ) {}

  /**
   * A pooled runner, owned from now on; loaded with `load`, or killed at the
   * load timeout. `onLoading` is told the runner (and the claim's time) once its specialization is on its way.
   * `keepLogs`: what the runner prints from its claim on goes to the function's logs (not for a trial load).
   */
  async claimAndLoad(
    load: LoadSpec,
    hash: string,
    onLoading?: (runner: RunnerProcess, claimMs: number) => void,
    keepLogs = false,
  ): Promise<{ runner: RunnerProcess; claimMs: number; loadMs: number; importMs: number }> {
    const t0 = performance.now();
    const { runner } = await this.pool.claim(load.runtime);
    this.#own(runner);
    // From the claim on, what it prints is the function's: its import, and the invocations it holds for the
    // load (whose output can arrive before the answer to /specialize does).
    const onLine = (line: string, stream: string): void =>
      this.logs.append(load.name, `[${runner.pid} ${stream}]`, line);
    if (keepLogs) runner.on("line", onLine);
    const t1 = performance.now();
    let importMs: number;
    try {
      ({ importMs } = await runner.specialize(load, hash, onLoading && (() => onLoading(runner, t1 - t0))));
    } catch (err) {
      if (err instanceof FaasError && err.details?.loadTimeoutMs !== undefined)
        this.metrics.loadTimeouts.inc({ function: load.name });
      runner.off("line", onLine);
      this.pool.giveBack(runner);
      throw err;
    }
    return { runner, claimMs: t1 - t0, loadMs: performance.now() - t1, importMs };
  }

  #own(runner: RunnerProcess): void {
    this.#owned.add(runner);
    void runner.exited.then(() => this.#owned.delete(runner));
  }

  /** Makes at least `target` replicas exist or start; joins a scale-up in progress. */
  scaleUp(f: LocalFunction, target: number): Promise<ScaleUpResult> {
    const missing = target - f.replicas.length - f.pending;
    if (missing <= 0) {
      if (f.replicas.length > 0 || f.batch === undefined) return Promise.resolve({ steps: [] });
      return f.batch;
    }
    const batch = firstFulfilled(Array.from({ length: missing }, () => this.add(f)));
    f.batch = batch;
    const clear = (): void => {
      if (f.batch === batch) f.batch = undefined;
    };
    batch.then(clear, clear);
    return batch;
  }

  /**
   * Starts one replica with the function's current code and routes it. The
   * gateway is told of it as soon as its specialization is on its way, so that
   * the first requests reach it right behind the load (the runner holds them).
   * If the code changes while it loads, that replica takes no more requests,
   * answers those it holds and stops, and one with the new code is started in
   * its place: the requests waiting for this scale-up get the new code.
   */
  async add(f: LocalFunction): Promise<ScaleUpResult> {
    f.pending++;
    try {
      for (;;) {
        const started = await this.#startOne(f);
        if (started !== undefined) return started;
      }
    } finally {
      f.pending--;
    }
  }

  /** Gives `f` new code: replicas still loading an older code take no more requests (their load is superseded). */
  changeCode(f: LocalFunction, load: LoadSpec, hash: string): void {
    f.load = load;
    f.hash = hash;
    for (const s of f.starting) if (s.hash !== hash) s.supersede();
  }

  /** One replica of `f`'s current code, routed; undefined if the code changed while it loaded. */
  async #startOne(f: LocalFunction): Promise<ScaleUpResult | undefined> {
    const { hash, load } = f;
    let settle: { resolve(): void; reject(err: unknown): void } | undefined;
    const loaded = new Promise<void>((resolve, reject) => {
      settle = { resolve, reject };
    });
    loaded.catch(() => undefined); // the error is reported by this method's caller
    const starting = {
      hash,
      // The gateway drops a loading replica whose load rejects; the requests it holds are still answered.
      supersede: () => settle?.reject(new LoadSuperseded(`${load.name}: its code changed while a replica was loading`)),
    };
    f.starting.add(starting);
    // `changeCode` has rejected `loaded` by then.
    const superseded = (): boolean => f.hash !== hash && this.host.isCurrent(f) && !this.host.stopped();
    const onLoading = (runner: RunnerProcess, claimMs: number): void => {
      if (f.hash !== hash) return; // already superseded: no request may reach the older code
      this.host.endpointLoading(load.name, { id: runner.id, host: "127.0.0.1", port: runner.port }, loaded, [
        { name: "scaleup", ms: claimMs },
      ]);
    };
    try {
      let started: Awaited<ReturnType<Replicas["claimAndLoad"]>>;
      try {
        started = await this.claimAndLoad(load, hash, onLoading, true);
      } catch (err) {
        if (superseded()) return undefined; // the older code's failure no longer matters
        throw err;
      }
      const { runner, claimMs, loadMs, importMs } = started;
      if (superseded()) {
        // SIGTERM: it answers what it holds first, each call within its timeout.
        void runner.stop(load.timeoutSeconds * 1000 + 5000);
        return undefined;
      }
      if (this.host.stopped() || !this.host.isCurrent(f)) {
        void runner.stop(1000);
        throw new FaasError("SCALE_UP_FAILED", `${load.name} was removed while a replica was starting`);
      }
      this.metrics.specializations.inc({ function: load.name });
      this.#attach(f, runner);
      settle?.resolve();
      return {
        steps: [
          { name: "scaleup", ms: claimMs },
          { name: "specialize", ms: loadMs },
          // Part of `specialize`: the runner's own import of the code (its `loadMs`).
          { name: "import", ms: importMs },
        ],
      };
    } catch (err) {
      settle?.reject(err);
      throw err;
    } finally {
      f.starting.delete(starting);
    }
  }

  #attach(f: LocalFunction, runner: RunnerProcess): void {
    runner.once("exit", (info: RunnerExit) => this.#onExit(f, runner, info));
    f.replicas.push(runner);
    f.lastScaleUpAt = performance.now();
    this.#announce(f);
  }

  #announce(f: LocalFunction): void {
    const endpoints: Endpoint[] = f.replicas.map((r) => ({ id: r.id, host: "127.0.0.1", port: r.port }));
    this.host.endpointsChanged(f.load.name, endpoints);
  }

  #onExit(f: LocalFunction, runner: RunnerProcess, info: RunnerExit): void {
    if (f.replicas.includes(runner)) {
      f.replicas = f.replicas.filter((r) => r !== runner);
      this.#announce(f);
    }
    if (runner.stopRequested || this.host.stopped()) return;
    const how = info.code !== null ? `exit code ${info.code}` : `signal ${info.signal}`;
    this.metrics.crashes.inc({ function: f.load.name });
    this.logs.append(
      f.load.name,
      "[faas]",
      `runner ${runner.pid} exited unexpectedly (${how}); it will be replaced when needed`,
    );
    this.log.warn({ fn: f.load.name, runner: runner.id, how }, "runner exited");
    if (this.host.isCurrent(f)) void this.ensureMin(f);
  }

  async ensureMin(f: LocalFunction): Promise<void> {
    const min = f.resource.spec.minReplicas;
    if (min === 0 || f.replicas.length + f.pending >= min || this.host.stopped() || !this.host.isCurrent(f)) return;
    try {
      await this.scaleUp(f, Math.min(min, f.resource.spec.maxReplicas));
    } catch (err) {
      this.log.error({ fn: f.load.name, err: (err as Error).message }, "could not keep minReplicas");
    }
  }

  /** Takes a replica out of routing at once; resolves once it has finished its requests and stopped. */
  async retire(f: LocalFunction, runner: RunnerProcess): Promise<void> {
    if (f.replicas.includes(runner)) {
      f.replicas = f.replicas.filter((r) => r !== runner);
      this.#announce(f);
    }
    const budgetMs = f.resource.spec.timeoutSeconds * 1000 + 5000;
    const deadline = performance.now() + budgetMs;
    const load = this.host.load();
    while (runner.alive && load.endpointInFlight(f.load.name, runner.id) > 0 && performance.now() < deadline) {
      await sleep(20);
    }
    await runner.stop(budgetMs);
    void this.ensureMin(f);
  }

  /** Stops every owned runner: routed ones drain for their function's timeout, loading ones get a second. */
  async stopAll(graceMs: (runner: RunnerProcess) => number): Promise<void> {
    await Promise.all([...this.#owned].map((r) => r.stop(r.state === "specialized" ? graceMs(r) : 1000)));
  }

  /** Pids of every runner owned, routed or not (tests use it to check cleanup). */
  ownedPids(): number[] {
    return [...this.#owned].map((r) => r.pid);
  }
}

/** Resolves with the first success; rejects with the first error when all fail. */
function firstFulfilled<T>(promises: Promise<T>[]): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let failures = 0;
    let firstError: unknown;
    for (const p of promises) {
      p.then(resolve, (err: unknown) => {
        firstError ??= err;
        if (++failures === promises.length) reject(firstError);
      });
    }
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
