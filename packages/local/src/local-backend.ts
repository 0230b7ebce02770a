/**
 * The local backend: each replica is a runner process on 127.0.0.1. Cold
 * starts specialize a pooled generic runner; load adds replicas up to
 * maxReplicas; idle functions scale to minReplicas (zero) after idleSeconds,
 * never with requests in flight; crashed runners are replaced.
 *
 * The concerns live apart: `WarmPool` (generic runners), `Replicas` (a
 * function's runner processes), `Deployments` (serialized deploy and remove),
 * `decideScale` (the scaling policy, pure) and `LocalMetrics`; secrets and
 * configs live in `ValueStore`s, and `Resolver` turns a function's references
 * to them into its runners' environment and files.
 */
import { join } from "node:path";
import { FaasError, type FunctionResource, type Runtime } from "@faas/api";
import type {
  Backend,
  BackendAdmin,
  BackendListener,
  FunctionStatus,
  KeyAdmin,
  KeyLookup,
  LoadView,
  LogOptions,
  ScaleUpResult,
} from "@faas/gateway";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { Deployments, type RefreshResult } from "./deployments.js";
import { FunctionStore } from "./function-store.js";
import { KeyStore } from "./key-store.js";
import { type LocalFunction, newLocalFunction } from "./local-function.js";
import { LocalMetrics } from "./local-metrics.js";
import { LogStore } from "./log-store.js";
import { Replicas } from "./replicas.js";
import { Resolver } from "./resolver.js";
import { runnerCommand } from "./runner-commands.js";
import { RunnerProcess } from "./runner-process.js";
import { decideScale } from "./scale-policy.js";
import { type ValueKind, ValueStore, type ValueSummary } from "./value-store.js";
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
  /**
   * A runner start, trial load or specialization that takes longer fails with
   * an error naming the function, and the runner is killed (FAAS_LOAD_TIMEOUT_MS).
   */
  loadTimeoutMs?: number;
}

export const DEFAULT_LOAD_TIMEOUT_MS = 10_000;

const noopListener: BackendListener = { endpointsChanged() {}, functionChanged() {} };
const noLoad: LoadView = { inFlight: () => 0, queued: () => 0, lastActivityMs: () => 0, endpointInFlight: () => 0 };

export class LocalBackend implements Backend, BackendAdmin {
  readonly kind = "local";
  readonly admin: BackendAdmin = this;
  /** The gateway looks keys up here; the admin API creates, lists and revokes them. */
  readonly keys: KeyLookup & KeyAdmin;
  readonly #keys: KeyStore;
  readonly #fns = new Map<string, LocalFunction>();
  readonly #pool: WarmPool;
  readonly #store: FunctionStore;
  readonly #logs: LogStore;
  readonly #metrics = new LocalMetrics();
  readonly #replicas: Replicas;
  readonly #deployments: Deployments;
  readonly #values: Record<ValueKind, ValueStore>;
  readonly #resolver: Resolver;
  #listener: BackendListener = noopListener;
  #load: LoadView = noLoad;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(
    private readonly opts: LocalBackendOptions,
    private readonly log: Logger,
  ) {
    this.#store = new FunctionStore(opts.dataDir, log);
    this.#values = { secret: new ValueStore(opts.dataDir, "secret"), config: new ValueStore(opts.dataDir, "config") };
    this.#resolver = new Resolver(opts.dataDir, this.#values);
    this.#keys = new KeyStore(opts.dataDir, log);
    this.keys = {
      apiKey: (fn, id) => this.#keys.get(fn, id),
      apiKeyCount: (fn) => this.#keys.count(fn),
      create: (fn) =>
        this.#fns.has(fn)
          ? this.#keys.create(fn)
          : Promise.reject(new FaasError("FUNCTION_NOT_FOUND", `no function named "${fn}"`)),
      list: (fn) => this.#keys.list(fn),
      revoke: (id) => this.#keys.revoke(id),
    };
    this.#logs = new LogStore(opts.dataDir);
    this.#pool = new WarmPool(
      opts.runtimes,
      opts.poolSize,
      (rt) => this.#spawn(rt),
      log.child({ component: "pool" }),
      100,
      (runner) => this.#keepWarm(runner),
    );
    this.#replicas = new Replicas(
      this.#pool,
      this.#logs,
      this.#metrics,
      {
        load: () => this.#load,
        isCurrent: (f) => this.#fns.get(f.load.name) === f,
        stopped: () => this.#stopped,
        endpointsChanged: (fn, endpoints) => this.#listener.endpointsChanged(fn, endpoints),
        endpointLoading: (fn, endpoint, loaded, steps) => this.#listener.endpointLoading?.(fn, endpoint, loaded, steps),
      },
      log,
    );
    this.#deployments = new Deployments(
      {
        functions: this.#fns,
        functionChanged: (name, resource) => this.#listener.functionChanged(name, resource),
      },
      this.#store,
      this.#replicas,
      this.#resolver,
      log,
    );
  }

  registerMetrics(registry: Registry): void {
    this.#metrics.register(registry, this.#pool, this.opts.runtimes);
  }

  #spawn(runtime: Runtime): Promise<RunnerProcess> {
    // Packages a function pulls from a registry (spec.package.registry) go to the data dir, the
    // owner's only, never to a /tmp shared with other users.
    const baseEnv = { ...this.opts.baseEnv, FAAS_PACKAGE_CACHE_DIR: join(this.opts.dataDir, "package-cache") };
    const cmd = runnerCommand(runtime, { python: this.opts.python, node: this.opts.node, baseEnv });
    const loadTimeoutMs = this.opts.loadTimeoutMs ?? DEFAULT_LOAD_TIMEOUT_MS;
    return RunnerProcess.spawn(runtime, cmd, { loadTimeoutMs }).then((runner) => {
      runner.on("line", (line: string, stream: string) => {
        if (runner.state === "generic") this.log.debug({ runner: runner.id, stream, line }, "runner output");
      });
      return runner;
    });
  }

  /**
   * A pooled runner's connections are opened before any claim, and kept open
   * while it waits: the supervisor's (for /specialize) and the gateway's (for
   * the first request).
   */
  #keepWarm(runner: RunnerProcess): void {
    void runner.ping();
    this.#listener.preconnect?.({ id: runner.id, host: "127.0.0.1", port: runner.port });
  }

  async start(listener: BackendListener, load: LoadView): Promise<void> {
    this.#listener = listener;
    this.#load = load;
    await this.#logs.init();
    await this.#keys.load();
    for (const values of Object.values(this.#values)) await values.load();
    for (const fn of await this.#store.loadAll()) {
      const resolved = await this.#resolver.resolve(fn).catch((err: FaasError) => {
        this.log.error({ fn: fn.metadata.name, err: err.message }, "a stored function refers to a missing value");
        return err;
      });
      this.#fns.set(fn.metadata.name, newLocalFunction(fn, resolved));
    }
    await this.#pool.start();
    await Promise.allSettled([...this.#fns.values()].map((f) => this.#replicas.ensureMin(f)));
    this.#timer = setInterval(() => this.tick(performance.now()), this.opts.tickMs);
    this.#timer.unref();
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
    if (f.unresolved !== undefined) {
      return Promise.reject(
        new FaasError("FUNCTION_LOAD_FAILED", `${name} cannot start: ${f.unresolved.message}`, { cause: f.unresolved }),
      );
    }
    return this.#replicas.scaleUp(f, Math.min(Math.max(replicas, 1), f.resource.spec.maxReplicas));
  }

  endpointFailed(name: string, endpointId: string, reason: string): void {
    const f = this.#fns.get(name);
    const runner = f?.replicas.find((r) => r.id === endpointId);
    if (f === undefined || runner === undefined) return;
    this.log.warn({ fn: name, runner: runner.id, reason }, "replica taken out of routing");
    void this.#replicas.retire(f, runner);
  }

  /** One scaling pass over every function (decideScale says what to do). */
  tick(now: number): void {
    for (const f of this.#fns.values()) {
      const spec = f.resource.spec;
      const name = f.load.name;
      const decision = decideScale({
        ready: f.replicas.length,
        pending: f.pending,
        minReplicas: spec.minReplicas,
        concurrency: spec.concurrency,
        idleSeconds: spec.idleSeconds,
        inFlight: this.#load.inFlight(name),
        queued: this.#load.queued(name),
        idleMs: now - Math.max(this.#load.lastActivityMs(name), f.lastScaleUpAt),
        excessMs: f.excessSince === undefined ? undefined : now - f.excessSince,
        scaleInDelayMs: this.opts.scaleInDelayMs,
      });
      f.excessSince = decision.excess ? (f.excessSince ?? now) : undefined;
      switch (decision.action) {
        case "fill":
          void this.#replicas.ensureMin(f);
          break;
        case "scale-to-min":
          this.log.info({ fn: name, from: f.replicas.length, to: spec.minReplicas }, "idle: scaling in");
          for (const r of f.replicas.slice(spec.minReplicas)) void this.#replicas.retire(f, r);
          break;
        case "remove-one": {
          const victim = [...f.replicas].sort(
            (a, b) => this.#load.endpointInFlight(name, a.id) - this.#load.endpointInFlight(name, b.id),
          )[0];
          if (victim !== undefined) void this.#replicas.retire(f, victim);
          f.excessSince = now;
          break;
        }
        case "hold":
          break;
      }
    }
  }

  // BackendAdmin
  deploy(resource: FunctionResource): Promise<boolean> {
    if (this.#stopped) return Promise.reject(new FaasError("SHUTTING_DOWN", "the local backend is stopping"));
    return this.#deployments.deploy(resource);
  }

  async remove(name: string): Promise<boolean> {
    const removed = await this.#deployments.remove(name);
    await this.#keys.removeFunction(name);
    return removed;
  }

  listValues(kind: ValueKind): ValueSummary[] {
    return this.#values[kind].list();
  }

  /** Stores the keys, then replaces the replicas of every function that refers to `name`. */
  async setValues(
    kind: ValueKind,
    name: string,
    data: Record<string, string>,
    replace: boolean,
  ): Promise<ValueSummary & RefreshResult> {
    const summary = await this.#values[kind].set(name, data, replace);
    this.log.info({ [kind]: name, keys: summary.keys }, `${kind} set`);
    return { ...summary, ...(await this.#deployments.refresh(kind, name)) };
  }

  /** Refused while a function refers to it: its replicas could not be replaced. */
  async deleteValues(kind: ValueKind, name: string): Promise<boolean> {
    const users = this.listFunctions().filter((f) => this.#resolver.refersTo(f, kind, name));
    if (users.length > 0) {
      throw new FaasError(
        "CONFLICT",
        `${kind} ${name} is used by ${users.map((f) => f.metadata.name).join(", ")}; change or delete those first`,
      );
    }
    const deleted = await this.#values[kind].delete(name);
    if (deleted) this.log.info({ [kind]: name }, `${kind} deleted`);
    return deleted;
  }

  logs(name: string, options: LogOptions) {
    return this.#logs.read(name, options);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    const graceMs = (r: RunnerProcess): number =>
      ((r.fn && this.#fns.get(r.fn)?.resource.spec.timeoutSeconds) || 30) * 1000 + 5000;
    await this.#replicas.stopAll(graceMs);
    await this.#pool.stop();
    await this.#logs.close();
  }

  /** Pids of a function's routed runners (tests use it to check cleanup). */
  runnerPids(name: string): number[] {
    return this.#fns.get(name)?.replicas.map((r) => r.pid) ?? [];
  }

  /** Pids of every runner this backend has claimed and not yet seen exit, routed or not. */
  ownedRunnerPids(): number[] {
    return this.#replicas.ownedPids();
  }
}
