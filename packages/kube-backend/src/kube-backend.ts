/**
 * The gateway's Kubernetes backend: Functions, EndpointSlices and Deployments
 * through self-healing watches; a cold episode patches the Deployment's scale
 * to max(current, n) — idempotent across gateway replicas — and waits on the
 * EndpointSlice watch for a ready pod. Activity is stamped on the Function so
 * the operator can scale idle functions to zero without cutting off requests.
 *
 * Endpoints are announced to the gateway only for Functions it can know (the
 * Function is in the cache), and each announcement is remembered: whichever
 * of the lists and watch events lands first, a Function that appears gets its
 * current endpoints, and a scale-up resolves only once a ready endpoint has
 * been announced.
 */
import {
  codeHash,
  deploymentName,
  FaasError,
  FUNCTION_LABEL,
  type FunctionResource,
  GATEWAY_FIELD_MANAGER,
  LAST_REQUEST_ANNOTATION,
  parseFunction,
  toLoadSpec,
} from "@faas/api";
import type {
  Backend,
  BackendListener,
  Endpoint,
  FunctionStatus,
  KeyLookup,
  LoadView,
  ScaleUpResult,
} from "@faas/gateway";
import { type KubeClient, type KubeObject, RESOURCES, Reflector } from "@faas/kube";
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";
import type { Announcement, AnnounceResult } from "./announcements.js";
import { ApiKeyCache } from "./api-key-cache.js";
import { deploymentSteps, PodProber } from "./pod-prober.js";
import { PoolClaimer, type PoolConfig, PoolFallback } from "./pool.js";
import { RoutingCheck } from "./routing-check.js";
import { ScaleGate } from "./scale-gate.js";

export interface KubeBackendConfig {
  /** Namespace whose Functions this gateway serves. */
  namespace: string;
  /** Longest a cold episode waits for a ready pod. */
  scaleUpTimeoutMs: number;
  /** How often activity stamps are considered. */
  activityTickMs: number;
  /** The warm pool of generic runner pods (ADR 0008). */
  pool: PoolConfig;
  /** How often announced endpoints are checked against what the gateway routes to. */
  routingCheckMs?: number;
  /** How long a ready endpoint may stay unroutable in the gateway before it counts as a violation. */
  routingGraceMs?: number;
  /** First delay of a scale-up that follows one that found a ready endpoint at once; doubles per repeat. */
  scaleBackoffBaseMs?: number;
  scaleBackoffMaxMs?: number;
  /**
   * Deadline of each API call a cold start makes (read and patch the scale, stamp the
   * Function): when the API server does not answer by then, the parked requests get
   * `503 SCALE_UP_FAILED` instead of waiting for it. Default 5 s.
   */
  coldApiTimeoutMs?: number;
}

const DEFAULT_COLD_API_TIMEOUT_MS = 5000;
/** How long a cold start waits for an API server already known to be unreachable to answer a ping. */
const UNREACHABLE_PING_MS = 1000;

interface EndpointSlice extends KubeObject {
  endpoints?: {
    addresses: string[];
    conditions?: { ready?: boolean; terminating?: boolean };
    targetRef?: { name?: string };
  }[];
  ports?: { name?: string; port?: number }[] | null;
}
interface Deployment extends KubeObject {
  spec?: { replicas?: number };
  status?: { readyReplicas?: number };
}

interface Waiter {
  resolve(): void;
}

const SERVICE_NAME_LABEL = "kubernetes.io/service-name";

export class KubeBackend implements Backend {
  readonly kind = "kubernetes";
  readonly #functions: Reflector<KubeObject>;
  readonly #slices: Reflector<EndpointSlice>;
  readonly #deployments: Reflector<Deployment>;
  readonly #parsed = new Map<string, { rv: string | undefined; fn: FunctionResource | undefined }>();
  /** Ready, routable endpoints per function, as the caches say. */
  readonly #endpoints = new Map<string, Endpoint[]>();
  /** What the listener was last told per function; scale-ups wait on this, not on the caches. */
  readonly #announced = new Map<string, readonly Endpoint[]>();
  readonly #failed = new Map<string, Set<string>>();
  readonly #waiters = new Map<string, Set<Waiter>>();
  readonly #stamped = new Map<string, { at: number; activity: number }>();
  readonly #pool: PoolClaimer;
  readonly #prober: PodProber;
  readonly #keys: ApiKeyCache;
  /** API keys of functions with `auth: apiKey`, from the Secret `faas-api-keys` (ADR 0011). */
  readonly keys: KeyLookup;
  /** Code hash per parsed Function object (the pool routes only to pods holding the current code). */
  readonly #hashes = new WeakMap<FunctionResource, string>();
  #listener: BackendListener | undefined;
  #load: LoadView | undefined;
  #timer: NodeJS.Timeout | undefined;
  #checkTimer: NodeJS.Timeout | undefined;
  #started = false;
  readonly #gate: ScaleGate<ScaleUpResult>;
  readonly #routing: RoutingCheck;
  readonly #scalePatches = new Counter({
    name: "faas_scale_patches_total",
    help: "Scale subresource patches this gateway sent (Kubernetes backend).",
    labelNames: ["function"],
    registers: [],
  });

  constructor(
    private readonly client: KubeClient,
    private readonly cfg: KubeBackendConfig,
    private readonly log: Logger,
  ) {
    const ns = cfg.namespace;
    this.#gate = new ScaleGate({
      backoffBaseMs: cfg.scaleBackoffBaseMs ?? 100,
      backoffMaxMs: cfg.scaleBackoffMaxMs ?? 5000,
      repeatWindowMs: 10_000,
    });
    this.#routing = new RoutingCheck({ graceMs: cfg.routingGraceMs ?? 2000 });
    this.#functions = new Reflector(client, { resource: { ...RESOURCES.functions, namespace: ns } }, log);
    this.#slices = new Reflector<EndpointSlice>(
      client,
      { resource: { ...RESOURCES.endpointslices, namespace: ns } },
      log,
    );
    this.#deployments = new Reflector<Deployment>(
      client,
      { resource: { ...RESOURCES.deployments, namespace: ns }, labelSelector: FUNCTION_LABEL },
      log,
    );
    this.#pool = new PoolClaimer(client, ns, cfg.pool, log.child({ component: "pool" }), (fn) => this.#recompute(fn));
    // The gateway opens its connection to each idle pool pod ahead, so a claim's first request skips it.
    this.#pool.onIdlePod = (e) => this.#listener?.preconnect?.(e);
    this.#prober = new PodProber(client, ns, log.child({ component: "pod-prober" }), (fn) => this.#recompute(fn));
    this.#keys = new ApiKeyCache(
      client,
      ns,
      (fn) => this.#functions.get(`${ns}/${fn}`)?.metadata.uid,
      log.child({ component: "api-keys" }),
    );
    this.keys = this.#keys;
  }

  registerMetrics(registry: Registry): void {
    registry.registerMetric(this.#scalePatches);
    registry.registerMetric(this.#gate.backoffs);
    registry.registerMetric(this.#routing.violations);
    this.#pool.registerMetrics(registry);
    this.client.metrics.register(registry);
  }

  /** Synced caches, and no announced replica the gateway fails to route to. */
  ready(): boolean {
    return (
      this.#started &&
      this.#functions.synced &&
      this.#slices.synced &&
      this.#deployments.synced &&
      this.#keys.synced &&
      this.#routing.violated.size === 0
    );
  }

  #codeHash(fn: FunctionResource): string {
    let h = this.#hashes.get(fn);
    if (h === undefined) {
      h = codeHash(toLoadSpec(fn));
      this.#hashes.set(fn, h);
    }
    return h;
  }

  async start(listener: BackendListener, load: LoadView): Promise<void> {
    this.#listener = listener;
    this.#load = load;
    const onFunction = (obj: KubeObject): void => {
      const name = obj.metadata.name;
      const before = this.#parsed.get(name)?.fn;
      const after = this.getFunction(name);
      if (before !== after) listener.functionChanged(name, after);
      // Its slices may have landed first: the gateway hears of them now that it can know the function.
      // New code: claimed pool pods holding the old code leave routing.
      this.#recompute(name);
    };
    this.#functions.on("add", onFunction);
    this.#functions.on("update", onFunction);
    this.#functions.on("delete", (obj) => {
      const name = obj.metadata.name;
      this.#parsed.delete(name);
      this.#announced.delete(name);
      this.#routing.forget(name);
      this.#gate.forget(name);
      listener.functionChanged(name, undefined);
    });
    const onSlice = (s: EndpointSlice): void => {
      const fn = sliceFunction(s);
      if (fn !== undefined) this.#recompute(fn);
    };
    this.#slices.on("add", onSlice);
    this.#slices.on("update", onSlice);
    this.#slices.on("delete", onSlice);
    await Promise.all([
      this.#functions.start(),
      this.#slices.start(),
      this.#deployments.start(),
      this.#pool.start(),
      this.#prober.start(),
      this.#keys.start(),
    ]);
    this.#announceAll();
    this.#started = true;
    // Timer callbacks must never throw out: that would end the process.
    this.#timer = setInterval(
      () =>
        void this.#stampActivity().catch((err: unknown) =>
          this.log.error({ err: (err as Error)?.stack ?? String(err) }, "activity stamping failed"),
        ),
      this.cfg.activityTickMs,
    );
    this.#timer.unref();
    this.#checkTimer = setInterval(() => {
      try {
        this.checkRouting();
      } catch (err) {
        this.log.error({ err: (err as Error)?.stack ?? String(err) }, "routing check failed");
      }
    }, this.cfg.routingCheckMs ?? 500);
    this.#checkTimer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    clearInterval(this.#checkTimer);
    this.#functions.stop();
    this.#slices.stop();
    this.#deployments.stop();
    this.#pool.stop();
    this.#prober.stop();
    this.#keys.stop();
  }

  /** A runner's announcement that its pod is ready (announcements.ts, ADR 0018). */
  announce(a: Announcement): AnnounceResult {
    return a.namespace === this.cfg.namespace ? this.#prober.announce(a) : "not-served";
  }

  getFunction(name: string): FunctionResource | undefined {
    const obj = this.#functions.get(`${this.cfg.namespace}/${name}`);
    if (obj === undefined) return undefined;
    const cached = this.#parsed.get(name);
    const rv = `${obj.metadata.generation ?? ""}`;
    if (cached?.rv === rv) return cached.fn;
    let fn: FunctionResource | undefined;
    try {
      fn = parseFunction({ apiVersion: obj.apiVersion, kind: obj.kind, metadata: { name }, spec: obj.spec });
    } catch (err) {
      this.log.warn({ fn: name, err: (err as Error).message }, "ignoring an invalid Function");
    }
    this.#parsed.set(name, { rv, fn });
    return fn;
  }

  listFunctions(): FunctionResource[] {
    return this.#functions
      .list()
      .map((o) => this.getFunction(o.metadata.name))
      .filter((f): f is FunctionResource => f !== undefined);
  }

  status(name: string): FunctionStatus | undefined {
    const fn = this.getFunction(name);
    if (fn === undefined) return undefined;
    const d = this.#deployment(name);
    return {
      name,
      runtime: fn.spec.runtime,
      readyReplicas: this.#endpoints.get(name)?.length ?? 0,
      desiredReplicas: d?.spec?.replicas ?? 0,
      minReplicas: fn.spec.minReplicas,
      maxReplicas: fn.spec.maxReplicas,
    };
  }

  #deployment(name: string): Deployment | undefined {
    return this.#deployments.get(`${this.cfg.namespace}/${deploymentName(name)}`);
  }

  /** Tells the listener every known function's endpoints, whether or not they changed. */
  #announceAll(): void {
    for (const o of this.#functions.list()) this.#recompute(o.metadata.name, true);
  }

  /**
   * Compares each function's announced endpoints with what the gateway routes
   * to; heals a lasting mismatch by relisting and announcing everything again.
   */
  checkRouting(): void {
    const load = this.#load;
    if (load?.routableEndpoints === undefined || !this.#started) return;
    let heal = false;
    for (const [fn, eps] of this.#announced) {
      const routable = load.routableEndpoints(fn);
      if (this.#routing.observe(fn, eps.length, routable) !== "violated") continue;
      this.log.error(
        { fn, ready: eps.length, routable },
        "ready replicas known here are not routable in the gateway; resyncing",
      );
      heal = true;
    }
    if (heal) {
      this.#slices.resync();
      this.#functions.resync();
      this.#announceAll();
    }
  }

  #recompute(fn: string, force = false): void {
    const failed = this.#failed.get(fn);
    const eps: Endpoint[] = [];
    const terminating = new Set<string>();
    for (const s of this.#slices.list()) {
      if (sliceFunction(s) !== fn) continue;
      const port = (s.ports ?? []).find((p) => p.name === "http")?.port ?? s.ports?.[0]?.port;
      if (port === undefined) continue;
      for (const e of s.endpoints ?? []) {
        const host = e.addresses[0];
        if (host === undefined) continue;
        const id = `${e.targetRef?.name ?? host}@${host}`;
        if (e.conditions?.terminating === true) terminating.add(id);
        if (e.conditions?.ready !== true || e.conditions.terminating === true) continue;
        if (failed?.has(id)) continue;
        eps.push({ id, host, port });
      }
    }
    // New pods found ready by a direct probe, before the EndpointSlice lists them ready.
    for (const e of this.#prober.endpoints(fn)) {
      if (!terminating.has(e.id) && !failed?.has(e.id) && !eps.some((x) => x.id === e.id)) eps.push(e);
    }
    if (eps.length === 0) {
      // Until the function's own pods are ready, the pool pods claimed for it serve it.
      const resource = this.getFunction(fn);
      if (resource !== undefined) {
        for (const e of this.#pool.endpoints(fn, this.#codeHash(resource))) if (!failed?.has(e.id)) eps.push(e);
      }
    }
    eps.sort((a, b) => a.id.localeCompare(b.id));
    this.#endpoints.set(fn, eps);
    this.#announce(fn, eps, force);
  }

  /** Tells the listener, if it can know the function and has not been told these endpoints yet. */
  #announce(fn: string, eps: readonly Endpoint[], force: boolean): void {
    const listener = this.#listener;
    if (listener === undefined || this.getFunction(fn) === undefined) return;
    const before = this.#announced.get(fn);
    if (!force && before !== undefined && sameEndpoints(before, eps)) return;
    this.#announced.set(fn, eps);
    listener.endpointsChanged(fn, eps);
    if (eps.length > 0) {
      for (const w of this.#waiters.get(fn) ?? []) w.resolve();
      this.#waiters.delete(fn);
    }
  }

  scaleUp(fn: string, replicas: number): Promise<ScaleUpResult> {
    // Whatever the caches hold reaches the gateway before anything is decided.
    this.#recompute(fn);
    if ((this.#announced.get(fn)?.length ?? 0) > 0) {
      // A routable replica was announced (its own pod, or a claimed pool pod while the Deployment's
      // comes up): the cold start is done or under way, and nothing is claimed or patched. Asked
      // again while the gateway routes to none, the announcement was lost: say it again, and let
      // the gate delay repeats, so a caller that keeps asking cannot spin.
      return this.#gate.run(fn, async () => {
        if (this.#load?.routableEndpoints?.(fn) === 0) this.#recompute(fn, true);
        return { result: { steps: [] }, immediate: true };
      });
    }
    // One scale-up in flight per function; callers meanwhile share it.
    return this.#gate.run(fn, async () => ({ result: await this.#scaleUp(fn, replicas), immediate: false }));
  }

  async #scaleUp(fn: string, replicas: number): Promise<ScaleUpResult> {
    const resource = this.getFunction(fn);
    if (resource === undefined) throw new FaasError("FUNCTION_NOT_FOUND", `no function named "${fn}"`);
    const started = performance.now();
    // On Kubernetes the gateway only brings a function from 0 to 1; the HPA owns 1..N (ADR 0005).
    if (replicas > 1 && (this.#deployment(fn)?.spec?.replicas ?? 0) >= 1) return { steps: [] };
    const target = 1;
    const ready = this.#waitForEndpoint(fn, this.cfg.scaleUpTimeoutMs);
    const pod = this.#prober.track(fn);
    let scaledAt = started;
    try {
      // The activity stamp and the scale patch go together: the operator counts a scale-up from
      // zero as activity too (ADR 0005), so it never takes this one for an idle function.
      // The Deployment is asked for a replica whether or not a pool pod serves meanwhile.
      const deployment = this.#apiReachable(fn)
        .then(() => Promise.all([this.#stamp(fn), this.#ensureScale(fn, target)]))
        .then(() => {
          scaledAt = performance.now();
        });
      // Awaited below, or only logged once a pool pod serves; until then it may fail unobserved
      // (a claim can outlast the API deadline): never an unhandled rejection, which ends the process.
      deployment.catch(() => undefined);
      if (this.cfg.pool.enabled) {
        const claimed = await this.#pool
          .claim(resource, this.#functions.get(`${this.cfg.namespace}/${fn}`)?.metadata.uid, this.#codeHash(resource))
          .catch((err: unknown) => {
            // The code does not load (a pool runner said so, in the same image the Deployment runs):
            // the parked requests get that error now, not a timeout later. The Deployment is still
            // asked for its pod, whose status will say the same.
            if (err instanceof PoolFallback && err.reason === "load_failed") {
              deployment.catch(() => undefined);
              throw new FaasError("FUNCTION_LOAD_FAILED", `function ${fn} could not be loaded: ${err.message}`, {
                cause: err,
              });
            }
            return undefined;
          });
        if (claimed !== undefined) {
          deployment.catch((err: unknown) =>
            this.log.warn({ fn, err: (err as Error).message }, "scale-up behind a pool pod failed"),
          );
          this.#recompute(fn);
          if ((this.#announced.get(fn)?.length ?? 0) > 0) return { steps: claimed.steps };
        }
      }
      await deployment;
      // Resolved only once a ready endpoint was announced to the gateway, not merely seen here.
      if ((this.#announced.get(fn)?.length ?? 0) === 0) await ready.promise;
    } finally {
      ready.cancel();
      pod.stop();
    }
    return { steps: deploymentSteps(started, scaledAt, pod.marks, performance.now()) };
  }

  /**
   * Fails fast when the API server is known to be unreachable (its last request got no answer)
   * and does not answer a short ping now either: a cold start cannot get a pod without it.
   */
  async #apiReachable(fn: string): Promise<void> {
    const down = this.client.unreachable();
    if (down === undefined || (await this.client.ping(UNREACHABLE_PING_MS))) return;
    const secs = ((performance.now() - down.since) / 1000).toFixed(1);
    throw new FaasError(
      "SCALE_UP_FAILED",
      `cannot start a replica of ${fn}: the Kubernetes API server has not answered for ${secs} s (${down.reason}); retry shortly`,
    );
  }

  get #callTimeout(): { timeoutMs: number } {
    return { timeoutMs: this.cfg.coldApiTimeoutMs ?? DEFAULT_COLD_API_TIMEOUT_MS };
  }

  async #ensureScale(fn: string, target: number): Promise<void> {
    const ref = {
      ...RESOURCES.deployments,
      namespace: this.cfg.namespace,
      name: deploymentName(fn),
      subresource: "scale",
    };
    let current: number;
    try {
      const scale = await this.client.get<{ spec?: { replicas?: number } }>(ref, undefined, this.#callTimeout);
      current = scale.spec?.replicas ?? 0;
    } catch (cause) {
      throw new FaasError(
        "SCALE_UP_FAILED",
        `cannot read the scale of ${deploymentName(fn)}: ${(cause as Error).message}`,
        { cause },
      );
    }
    if (current >= target) return;
    try {
      await this.client.mergePatch(ref, { spec: { replicas: target } }, GATEWAY_FIELD_MANAGER, this.#callTimeout);
      this.#scalePatches.inc({ function: fn });
      this.log.info({ fn, from: current, to: target }, "scaled up");
    } catch (cause) {
      throw new FaasError("SCALE_UP_FAILED", `cannot scale ${deploymentName(fn)}: ${(cause as Error).message}`, {
        cause,
      });
    }
  }

  #waitForEndpoint(fn: string, timeoutMs: number): { promise: Promise<void>; cancel(): void } {
    let waiter!: Waiter;
    let timer: NodeJS.Timeout | undefined;
    const promise = new Promise<void>((resolve, reject) => {
      waiter = { resolve };
      timer = setTimeout(
        () =>
          reject(
            new FaasError(
              "SCALE_UP_FAILED",
              `no ready replica of ${fn} within ${timeoutMs / 1000} s; see \`kubectl describe deployment ${deploymentName(fn)}\``,
            ),
          ),
        timeoutMs,
      );
    });
    let set = this.#waiters.get(fn);
    if (set === undefined) {
      set = new Set();
      this.#waiters.set(fn, set);
    }
    set.add(waiter);
    return {
      promise,
      cancel: () => {
        clearTimeout(timer);
        this.#waiters.get(fn)?.delete(waiter);
      },
    };
  }

  endpointFailed(fn: string, endpointId: string, reason: string): void {
    let set = this.#failed.get(fn);
    if (set === undefined) {
      set = new Set();
      this.#failed.set(fn, set);
    }
    set.add(endpointId);
    this.log.warn(
      { fn, endpoint: endpointId, reason },
      "endpoint taken out of routing until the next EndpointSlice change",
    );
    // Forget the mark when the slice changes, so a recovered pod comes back.
    const clear = (): void => {
      if (this.#failed.get(fn)?.delete(endpointId)) this.#recompute(fn);
    };
    setTimeout(clear, 10_000).unref();
    this.#recompute(fn);
  }

  /** Stamps `last-request-at` for functions with new or ongoing traffic. */
  async #stampActivity(): Promise<void> {
    const load = this.#load;
    if (load === undefined) return;
    const now = performance.now();
    for (const fn of this.listFunctions()) {
      const name = fn.metadata.name;
      const activity = load.lastActivityMs(name);
      if (activity === 0) continue;
      const last = this.#stamped.get(name);
      const interval = Math.min(10_000, Math.max(500, (fn.spec.idleSeconds * 1000) / 3));
      const busy = load.inFlight(name) > 0 || load.queued(name) > 0;
      const fresh = last === undefined || activity > last.activity;
      if ((fresh || busy) && (last === undefined || now - last.at >= interval)) {
        try {
          await this.#stamp(name);
        } catch (err) {
          this.log.warn({ fn: name, err: (err as Error).message }, "could not record activity");
        }
      }
    }
  }

  async #stamp(fn: string): Promise<void> {
    const now = performance.now();
    this.#stamped.set(fn, { at: now, activity: this.#load?.lastActivityMs(fn) ?? now });
    await this.client.mergePatch(
      { ...RESOURCES.functions, namespace: this.cfg.namespace, name: fn },
      { metadata: { annotations: { [LAST_REQUEST_ANNOTATION]: new Date().toISOString() } } },
      GATEWAY_FIELD_MANAGER,
      this.#callTimeout,
    );
  }
}

function sameEndpoints(a: readonly Endpoint[], b: readonly Endpoint[]): boolean {
  return (
    a.length === b.length && a.every((e, i) => e.id === b[i]?.id && e.host === b[i]?.host && e.port === b[i]?.port)
  );
}

/** `fn-hello` EndpointSlices belong to function `hello`. */
function sliceFunction(s: EndpointSlice): string | undefined {
  const byLabel = s.metadata.labels?.[FUNCTION_LABEL];
  if (byLabel) return byLabel;
  const svc = s.metadata.labels?.[SERVICE_NAME_LABEL];
  return svc?.startsWith("fn-") ? svc.slice(3) : undefined;
}
