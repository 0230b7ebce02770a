/**
 * The local backend: each replica is a runner process on 127.0.0.1. Cold
 * starts specialize a pooled generic runner; load adds replicas up to
 * maxReplicas; idle functions scale to minReplicas (zero) after idleSeconds,
 * never with requests in flight; crashed runners are replaced.
 */
import { codeHash, FaasError, type FunctionResource, type LoadSpec, type Runtime, toLoadSpec } from "@faas/api";
import type {
  Backend,
  BackendAdmin,
  BackendListener,
  Endpoint,
  FunctionStatus,
  LoadView,
  ScaleUpResult,
} from "@faas/gateway";
import type { Logger } from "pino";
import { Counter, Gauge, type Registry } from "prom-client";
import { FunctionStore } from "./function-store.js";
import { LogStore } from "./log-store.js";
import { runnerCommand } from "./runner-commands.js";
import { type RunnerExit, RunnerProcess } from "./runner-process.js";
import { WarmPool } from "./warm-pool.js";

export interface LocalBackendOptions {
  dataDir: string;
  /** Idle generic runners kept per runtime. */
  poolSize: number;
  runtimes: readonly Runtime[];
  python: string;
  node: string;
  /** Environment every runner starts with (functions add their own `env`). */
  baseEnv: Record<string, string>;
  /** How often scaling decisions are made. */
  tickMs: number;
  /** Replicas above what the load needs are removed after this long. */
  scaleInDelayMs: number;
}

interface LocalFunction {
  resource: FunctionResource;
  load: LoadSpec;
  hash: string;
  replicas: RunnerProcess[];
  pending: number;
  batch: Promise<ScaleUpResult> | undefined;
  lastScaleUpAt: number;
  excessSince: number | undefined;
}

const noopListener: BackendListener = { endpointsChanged() {}, functionChanged() {} };
const noLoad: LoadView = { inFlight: () => 0, queued: () => 0, lastActivityMs: () => 0, endpointInFlight: () => 0 };

export class LocalBackend implements Backend, BackendAdmin {
  readonly kind = "local";
  readonly admin: BackendAdmin = this;
  readonly #fns = new Map<string, LocalFunction>();
  /** Every specialized runner still running, routed or draining, so stop() leaves none behind. */
  readonly #owned = new Set<RunnerProcess>();
  readonly #pool: WarmPool;
  readonly #store: FunctionStore;
  readonly #logs: LogStore;
  #listener: BackendListener = noopListener;
  #load: LoadView = noLoad;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  readonly #specializations: Counter<"function">;
  readonly #crashes: Counter<"function">;

  constructor(
    private readonly opts: LocalBackendOptions,
    private readonly log: Logger,
  ) {
    this.#store = new FunctionStore(opts.dataDir, log);
    this.#logs = new LogStore(opts.dataDir);
    this.#pool = new WarmPool(opts.runtimes, opts.poolSize, (rt) => this.#spawn(rt), log.child({ component: "pool" }));
    this.#specializations = new Counter({
      name: "faas_specializations_total",
      help: "Runners specialized as a function (local backend).",
      labelNames: ["function"],
      registers: [],
    });
    this.#crashes = new Counter({
      name: "faas_runner_exits_unexpected_total",
      help: "Runners that exited without being asked to (crash, timeout poisoning).",
      labelNames: ["function"],
      registers: [],
    });
  }

  registerMetrics(registry: Registry): void {
    registry.registerMetric(this.#specializations);
    registry.registerMetric(this.#crashes);
    const pool = this.#pool;
    const runtimes = this.opts.runtimes;
    registry.registerMetric(
      new Gauge({
        name: "faas_warm_pool_idle_runners",
        help: "Generic runners waiting in the warm pool.",
        labelNames: ["runtime"],
        registers: [],
        collect() {
          for (const r of runtimes) this.set({ runtime: r }, pool.idleCount(r));
        },
      }),
    );
  }

  #spawn(runtime: Runtime): Promise<RunnerProcess> {
    const cmd = runnerCommand(runtime, { python: this.opts.python, node: this.opts.node, baseEnv: this.opts.baseEnv });
    return RunnerProcess.spawn(runtime, cmd).then((runner) => {
      runner.on("line", (line: string, stream: string) => {
        if (runner.state === "generic") this.log.debug({ runner: runner.id, stream, line }, "runner output");
      });
      return runner;
    });
  }

  async start(listener: BackendListener, load: LoadView): Promise<void> {
    this.#listener = listener;
    this.#load = load;
    await this.#logs.init();
    for (const fn of await this.#store.loadAll()) this.#fns.set(fn.metadata.name, this.#newFunction(fn));
    await this.#pool.start();
    await Promise.allSettled([...this.#fns.values()].map((f) => this.#ensureMin(f)));
    this.#timer = setInterval(() => this.tick(performance.now()), this.opts.tickMs);
    this.#timer.unref();
  }

  #newFunction(resource: FunctionResource): LocalFunction {
    const load = toLoadSpec(resource);
    return {
      resource,
      load,
      hash: codeHash(load),
      replicas: [],
      pending: 0,
      batch: undefined,
      lastScaleUpAt: 0,
      excessSince: undefined,
    };
  }

  getFunction(name: string): FunctionResource | undefined {
    return this.#fns.get(name)?.resource;
  }
  listFunctions(): FunctionResource[] {
    return [...this.#fns.values()].map((f) => f.resource);
  }
  status(name: string): FunctionStatus | undefined {
    const f = this.#fns.get(name);
    if (f === undefined) return undefined;
    const s = f.resource.spec;
    return {
      name,
      runtime: s.runtime,
      readyReplicas: f.replicas.length,
      desiredReplicas: f.replicas.length + f.pending,
      minReplicas: s.minReplicas,
      maxReplicas: s.maxReplicas,
    };
  }

  scaleUp(name: string, replicas: number): Promise<ScaleUpResult> {
    const f = this.#fns.get(name);
    if (f === undefined) return Promise.reject(new FaasError("FUNCTION_NOT_FOUND", `no function named "${name}"`));
    if (this.#stopped) return Promise.reject(new FaasError("SHUTTING_DOWN", "the local backend is stopping"));
    const target = Math.min(Math.max(replicas, 1), f.resource.spec.maxReplicas);
    const missing = target - f.replicas.length - f.pending;
    if (missing <= 0) {
      if (f.replicas.length > 0 || f.batch === undefined) return Promise.resolve({ steps: [] });
      return f.batch;
    }
    const batch = firstFulfilled(Array.from({ length: missing }, () => this.#addReplica(f)));
    f.batch = batch;
    const clear = (): void => {
      if (f.batch === batch) f.batch = undefined;
    };
    batch.then(clear, clear);
    return batch;
  }

  async #addReplica(f: LocalFunction): Promise<ScaleUpResult> {
    const { hash, load } = f;
    f.pending++;
    const t0 = performance.now();
    try {
      const { runner } = await this.#pool.claim(load.runtime);
      const t1 = performance.now();
      try {
        await runner.specialize(load, hash);
      } catch (err) {
        this.#pool.giveBack(runner);
        throw err;
      }
      const t2 = performance.now();
      if (this.#stopped || this.#fns.get(load.name) !== f || f.hash !== hash) {
        void runner.stop(1000);
        throw new FaasError("SCALE_UP_FAILED", `${load.name} changed while a replica was starting; retry`);
      }
      this.#specializations.inc({ function: load.name });
      this.#attach(f, runner);
      return {
        steps: [
          { name: "scaleup", ms: t1 - t0 },
          { name: "specialize", ms: t2 - t1 },
        ],
      };
    } finally {
      f.pending--;
    }
  }

  #attach(f: LocalFunction, runner: RunnerProcess): void {
    const name = f.load.name;
    runner.on("line", (line: string, stream: string) => this.#logs.append(name, `[${runner.pid} ${stream}]`, line));
    this.#owned.add(runner);
    runner.once("exit", (info: RunnerExit) => {
      this.#owned.delete(runner);
      this.#onExit(f, runner, info);
    });
    f.replicas.push(runner);
    f.lastScaleUpAt = performance.now();
    this.#announce(f);
  }

  #announce(f: LocalFunction): void {
    const endpoints: Endpoint[] = f.replicas.map((r) => ({ id: r.id, host: "127.0.0.1", port: r.port }));
    this.#listener.endpointsChanged(f.load.name, endpoints);
  }

  #onExit(f: LocalFunction, runner: RunnerProcess, info: RunnerExit): void {
    const wasRouted = f.replicas.includes(runner);
    if (wasRouted) {
      f.replicas = f.replicas.filter((r) => r !== runner);
      this.#announce(f);
    }
    if (runner.stopRequested || this.#stopped) return;
    const how = info.code !== null ? `exit code ${info.code}` : `signal ${info.signal}`;
    this.#crashes.inc({ function: f.load.name });
    this.#logs.append(
      f.load.name,
      "[faas]",
      `runner ${runner.pid} exited unexpectedly (${how}); it will be replaced when needed`,
    );
    this.log.warn({ fn: f.load.name, runner: runner.id, how }, "runner exited");
    if (this.#fns.get(f.load.name) === f) void this.#ensureMin(f);
  }

  async #ensureMin(f: LocalFunction): Promise<void> {
    const min = f.resource.spec.minReplicas;
    if (min === 0 || f.replicas.length + f.pending >= min) return;
    try {
      await this.scaleUp(f.load.name, min);
    } catch (err) {
      this.log.error({ fn: f.load.name, err: (err as Error).message }, "could not keep minReplicas");
    }
  }

  endpointFailed(name: string, endpointId: string, reason: string): void {
    const f = this.#fns.get(name);
    const runner = f?.replicas.find((r) => r.id === endpointId);
    if (f === undefined || runner === undefined) return;
    this.log.warn({ fn: name, runner: runner.id, reason }, "replica taken out of routing");
    void this.#retire(f, runner);
  }

  /** Stops routing to a replica, waits for its in-flight requests, then stops it. */
  async #retire(f: LocalFunction, runner: RunnerProcess): Promise<void> {
    if (f.replicas.includes(runner)) {
      f.replicas = f.replicas.filter((r) => r !== runner);
      this.#announce(f);
    }
    const budgetMs = f.resource.spec.timeoutSeconds * 1000 + 5000;
    const deadline = performance.now() + budgetMs;
    while (runner.alive && this.#load.endpointInFlight(f.load.name, runner.id) > 0 && performance.now() < deadline) {
      await sleep(20);
    }
    await runner.stop(budgetMs);
    void this.#ensureMin(f);
  }

  /** One scaling pass: keep minReplicas, scale idle functions in and to zero. */
  tick(now: number): void {
    for (const f of this.#fns.values()) {
      const spec = f.resource.spec;
      const name = f.load.name;
      if (f.replicas.length + f.pending < spec.minReplicas) {
        void this.#ensureMin(f);
        continue;
      }
      if (f.pending > 0 || f.replicas.length <= spec.minReplicas) {
        f.excessSince = undefined;
        continue;
      }
      const inFlight = this.#load.inFlight(name);
      const queued = this.#load.queued(name);
      const idleMs = now - Math.max(this.#load.lastActivityMs(name), f.lastScaleUpAt);
      if (inFlight === 0 && queued === 0 && idleMs >= spec.idleSeconds * 1000) {
        this.log.info({ fn: name, from: f.replicas.length, to: spec.minReplicas }, "idle: scaling in");
        for (const r of f.replicas.slice(spec.minReplicas)) void this.#retire(f, r);
        f.excessSince = undefined;
        continue;
      }
      const needed = Math.max(spec.minReplicas, 1, Math.ceil((inFlight + queued) / spec.concurrency));
      if (f.replicas.length <= needed) {
        f.excessSince = undefined;
        continue;
      }
      f.excessSince ??= now;
      if (now - f.excessSince < this.opts.scaleInDelayMs) continue;
      const victim = [...f.replicas].sort(
        (a, b) => this.#load.endpointInFlight(name, a.id) - this.#load.endpointInFlight(name, b.id),
      )[0];
      if (victim !== undefined) void this.#retire(f, victim);
      f.excessSince = now;
    }
  }

  // BackendAdmin
  async deploy(resource: FunctionResource): Promise<boolean> {
    const name = resource.metadata.name;
    const next = this.#newFunction(resource);
    const existing = this.#fns.get(name);
    if (existing === undefined || existing.hash !== next.hash) await this.#trialLoad(next.load, next.hash);
    await this.#store.save(resource);
    if (existing === undefined) {
      this.#fns.set(name, next);
      this.#listener.functionChanged(name, resource);
      void this.#ensureMin(next);
      return true;
    }
    existing.resource = resource;
    this.#listener.functionChanged(name, resource);
    if (existing.hash !== next.hash) {
      existing.load = next.load;
      existing.hash = next.hash;
      void this.#rollOut(existing);
    } else {
      void this.#ensureMin(existing);
    }
    return false;
  }

  /** Loads new code in a pooled runner once, so a broken function is refused at deploy. */
  async #trialLoad(load: LoadSpec, hash: string): Promise<void> {
    const { runner } = await this.#pool.claim(load.runtime);
    try {
      await runner.specialize(load, hash);
    } catch (err) {
      this.#pool.giveBack(runner);
      // At deploy time broken code is the caller's mistake: name the field.
      if (err instanceof FaasError && err.code === "FUNCTION_LOAD_FAILED") {
        throw new FaasError("INVALID_SPEC", `spec.code: ${err.message}`, {
          cause: err,
          details: { issues: [`spec.code: ${err.message}`] },
        });
      }
      throw err;
    }
    void runner.stop(1000);
  }

  /** New code: start as many new replicas as there are old ones, then drain the old. */
  async #rollOut(f: LocalFunction): Promise<void> {
    const old = f.replicas.filter((r) => r.codeHash !== f.hash);
    const count = Math.min(Math.max(old.length, f.resource.spec.minReplicas), f.resource.spec.maxReplicas);
    const results = await Promise.allSettled(Array.from({ length: count }, () => this.#addReplica(f)));
    const failed = results.find((r) => r.status === "rejected");
    if (failed !== undefined)
      this.log.error({ fn: f.load.name, err: String(failed.reason) }, "roll-out: a new replica failed");
    await Promise.all(old.map((r) => this.#retire(f, r)));
  }

  async remove(name: string): Promise<boolean> {
    const f = this.#fns.get(name);
    if (f === undefined) return false;
    this.#fns.delete(name);
    await this.#store.remove(name);
    this.#listener.functionChanged(name, undefined);
    const graceMs = f.resource.spec.timeoutSeconds * 1000 + 5000;
    await Promise.all(f.replicas.map((r) => r.stop(graceMs)));
    f.replicas = [];
    return true;
  }

  logs(name: string, options: { follow: boolean; tailLines: number; signal: AbortSignal }) {
    return this.#logs.read(name, options);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    const graceMs = (fn: string | undefined): number =>
      ((fn && this.#fns.get(fn)?.resource.spec.timeoutSeconds) || 30) * 1000 + 5000;
    await Promise.all([...this.#owned].map((r) => r.stop(graceMs(r.fn))));
    await this.#pool.stop();
    await this.#logs.close();
  }

  /** Pids of every runner this backend owns (tests use it to check cleanup). */
  runnerPids(name: string): number[] {
    return this.#fns.get(name)?.replicas.map((r) => r.pid) ?? [];
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
