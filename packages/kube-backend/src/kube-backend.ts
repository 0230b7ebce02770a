/**
 * The gateway's Kubernetes backend: Functions, EndpointSlices and Deployments
 * through self-healing watches; a cold episode patches the Deployment's scale
 * to max(current, n) — idempotent across gateway replicas — and waits on the
 * EndpointSlice watch for a ready pod. Activity is stamped on the Function so
 * the operator can scale idle functions to zero without cutting off requests.
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
import type { Backend, BackendListener, Endpoint, FunctionStatus, LoadView, ScaleUpResult } from "@faas/gateway";
import { type KubeClient, type KubeObject, RESOURCES, Reflector } from "@faas/kube";
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";
import { deploymentSteps, PodProber } from "./pod-prober.js";
import { PoolClaimer, type PoolConfig } from "./pool.js";

export interface KubeBackendConfig {
  /** Namespace whose Functions this gateway serves. */
  namespace: string;
  /** Longest a cold episode waits for a ready pod. */
  scaleUpTimeoutMs: number;
  /** How often activity stamps are considered. */
  activityTickMs: number;
  /** The warm pool of generic runner pods (ADR 0008). */
  pool: PoolConfig;
}

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
  readonly #endpoints = new Map<string, Endpoint[]>();
  readonly #failed = new Map<string, Set<string>>();
  readonly #waiters = new Map<string, Set<Waiter>>();
  readonly #stamped = new Map<string, { at: number; activity: number }>();
  readonly #pool: PoolClaimer;
  readonly #prober: PodProber;
  /** Code hash per parsed Function object (the pool routes only to pods holding the current code). */
  readonly #hashes = new WeakMap<FunctionResource, string>();
  #listener: BackendListener | undefined;
  #load: LoadView | undefined;
  #timer: NodeJS.Timeout | undefined;
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
    this.#prober = new PodProber(client, ns, log.child({ component: "pod-prober" }), (fn) => this.#recompute(fn));
  }

  registerMetrics(registry: Registry): void {
    registry.registerMetric(this.#scalePatches);
    this.#pool.registerMetrics(registry);
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
      if (before !== after) {
        listener.functionChanged(name, after);
        // New code: claimed pool pods holding the old code leave routing.
        this.#recompute(name);
      }
    };
    this.#functions.on("add", onFunction);
    this.#functions.on("update", onFunction);
    this.#functions.on("delete", (obj) => {
      this.#parsed.delete(obj.metadata.name);
      listener.functionChanged(obj.metadata.name, undefined);
    });
    const onSlice = (s: EndpointSlice): void => {
      const fn = sliceFunction(s);
      if (fn !== undefined) this.#recompute(fn);
    };
    this.#slices.on("add", onSlice);
    this.#slices.on("update", onSlice);
    this.#slices.on("delete", onSlice);
    await Promise.all([this.#functions.start(), this.#slices.start(), this.#deployments.start(), this.#pool.start()]);
    for (const s of this.#slices.list()) onSlice(s);
    this.#timer = setInterval(() => void this.#stampActivity(), this.cfg.activityTickMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#functions.stop();
    this.#slices.stop();
    this.#deployments.stop();
    this.#pool.stop();
    this.#prober.stop();
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

  #recompute(fn: string): void {
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
    const before = this.#endpoints.get(fn) ?? [];
    if (before.length === eps.length && before.every((e, i) => e.id === eps[i]?.id && e.port === eps[i]?.port)) return;
    this.#endpoints.set(fn, eps);
    this.#listener?.endpointsChanged(fn, eps);
    if (eps.length > 0) {
      for (const w of this.#waiters.get(fn) ?? []) w.resolve();
      this.#waiters.delete(fn);
    }
  }

  async scaleUp(fn: string, replicas: number): Promise<ScaleUpResult> {
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
      // Fresh activity first, so the operator never mistakes this scale-up for an idle function.
      // The Deployment is asked for a replica whether or not a pool pod serves meanwhile.
      const deployment = this.#stamp(fn)
        .then(() => this.#ensureScale(fn, target))
        .then(() => {
          scaledAt = performance.now();
        });
      if (this.cfg.pool.enabled) {
        const claimed = await this.#pool
          .claim(resource, this.#functions.get(`${this.cfg.namespace}/${fn}`)?.metadata.uid, this.#codeHash(resource))
          .catch(() => undefined);
        if (claimed !== undefined) {
          deployment.catch((err: unknown) =>
            this.log.warn({ fn, err: (err as Error).message }, "scale-up behind a pool pod failed"),
          );
          this.#recompute(fn);
          if ((this.#endpoints.get(fn)?.length ?? 0) > 0) return { steps: claimed.steps };
        }
      }
      await deployment;
      if ((this.#endpoints.get(fn)?.length ?? 0) === 0) await ready.promise;
    } finally {
      ready.cancel();
      pod.stop();
    }
    return { steps: deploymentSteps(started, scaledAt, pod.marks, performance.now()) };
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
      const scale = await this.client.get<{ spec?: { replicas?: number } }>(ref);
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
      await this.client.mergePatch(ref, { spec: { replicas: target } }, GATEWAY_FIELD_MANAGER);
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
    );
  }
}

/** `fn-hello` EndpointSlices belong to function `hello`. */
function sliceFunction(s: EndpointSlice): string | undefined {
  const byLabel = s.metadata.labels?.[FUNCTION_LABEL];
  if (byLabel) return byLabel;
  const svc = s.metadata.labels?.[SERVICE_NAME_LABEL];
  return svc?.startsWith("fn-") ? svc.slice(3) : undefined;
}
