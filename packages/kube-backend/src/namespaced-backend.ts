/**
 * One gateway, Functions of several namespaces: a Kubernetes backend per
 * namespace behind one `Backend`. The gateway knows a function by a key: its
 * bare name in the default namespace (so `/invoke/hello` keeps its meaning),
 * `<namespace>/<name>` elsewhere — a Kubernetes name never holds a `/`, so a
 * key is never ambiguous. Every call is passed to the namespace's backend
 * with the bare name, and everything it reports comes back under the key.
 *
 * Serving all namespaces, it watches Functions cluster-wide and starts a
 * namespace's backend when the first Function appears there.
 */
import type { ApiKeyRecord, FunctionResource } from "@faas/api";
import type { Backend, BackendListener, FunctionStatus, KeyLookup, LoadView, ScaleUpResult } from "@faas/gateway";
import { type KubeClient, type KubeObject, RESOURCES, Reflector } from "@faas/kube";
import type { Logger } from "pino";
import { Counter, Gauge, Registry } from "prom-client";
import type { Announcement, AnnounceResult } from "./announcements.js";
import type { KubeBackend } from "./kube-backend.js";

export interface NamespacedBackendOptions {
  /** The namespace `/invoke/<name>` means. */
  defaultNamespace: string;
  /** Served namespaces; `"*"` for every namespace that has a Function (and the default one). */
  namespaces: readonly string[] | "*";
  /** Makes the backend of one namespace. */
  backendFor(namespace: string): KubeBackend;
  log: Logger;
}

interface Scope {
  backend: KubeBackend;
  /** The backend's own metrics, summed into the gateway's with a namespace label. */
  registry: Registry;
  started: Promise<void>;
}

export class NamespacedBackend implements Backend {
  readonly kind = "kubernetes";
  readonly defaultNamespace: string;
  readonly #scopes = new Map<string, Scope>();
  /** The key's form of each backend's resources, by namespace and generation. */
  readonly #relabelled = new Map<string, { from: FunctionResource; to: FunctionResource }>();
  /** Serving all namespaces: every Function, to find the namespaces that have one. */
  readonly #allFunctions: Reflector<KubeObject> | undefined;
  #listener: BackendListener | undefined;
  #load: LoadView | undefined;
  #stopped = false;

  /** A runner's announcement goes to its namespace's backend (announcements.ts). */
  announce(a: Announcement): AnnounceResult {
    return this.#scopes.get(a.namespace)?.backend.announce(a) ?? "not-served";
  }

  constructor(
    private readonly client: KubeClient,
    private readonly opts: NamespacedBackendOptions,
  ) {
    this.defaultNamespace = opts.defaultNamespace;
    const initial = opts.namespaces === "*" ? [opts.defaultNamespace] : opts.namespaces;
    if (!initial.includes(opts.defaultNamespace)) {
      throw new Error(`the default namespace ${opts.defaultNamespace} is not served`);
    }
    for (const ns of initial) this.#add(ns);
    if (opts.namespaces === "*") {
      this.#allFunctions = new Reflector<KubeObject>(
        client,
        { resource: RESOURCES.functions },
        opts.log.child({ reflector: "functions-all-namespaces" }),
      );
      this.#allFunctions.on("add", (o) => this.#discovered(o.metadata.namespace));
    }
  }

  #add(ns: string): Scope {
    const backend = this.opts.backendFor(ns);
    const registry = new Registry();
    backend.registerMetrics(registry);
    const scope: Scope = { backend, registry, started: Promise.resolve() };
    this.#scopes.set(ns, scope);
    return scope;
  }

  /** A Function in a namespace not served yet: its backend starts now, and serves once synced. */
  #discovered(ns: string | undefined): void {
    if (ns === undefined || this.#scopes.has(ns) || this.#stopped) return;
    const scope = this.#add(ns);
    this.opts.log.info({ namespace: ns }, "serving a new namespace");
    if (this.#listener !== undefined && this.#load !== undefined) {
      scope.started = this.#startScope(ns, scope, this.#listener, this.#load).catch((err: unknown) =>
        this.opts.log.error({ namespace: ns, err: (err as Error).message }, "a namespace's backend failed to start"),
      );
    }
  }

  #startScope(ns: string, scope: Scope, listener: BackendListener, load: LoadView): Promise<void> {
    const k = (name: string): string => this.key(ns, name);
    const scoped: BackendListener = {
      endpointsChanged: (fn, endpoints) => listener.endpointsChanged(k(fn), endpoints),
      functionChanged: (fn, resource) => {
        if (resource === undefined) this.#relabelled.delete(k(fn));
        listener.functionChanged(k(fn), this.#relabel(ns, resource));
      },
      preconnect: listener.preconnect === undefined ? undefined : (e) => listener.preconnect?.(e),
    };
    const view: LoadView = {
      inFlight: (fn) => load.inFlight(k(fn)),
      queued: (fn) => load.queued(k(fn)),
      lastActivityMs: (fn) => load.lastActivityMs(k(fn)),
      endpointInFlight: (fn, id) => load.endpointInFlight(k(fn), id),
      routableEndpoints:
        load.routableEndpoints === undefined ? undefined : (fn) => load.routableEndpoints?.(k(fn)) ?? 0,
    };
    return scope.backend.start(scoped, view);
  }

  /** API keys of `auth: apiKey` functions: each namespace's own Secret, through its backend. */
  readonly keys: KeyLookup = {
    apiKey: (key: string, id: string): ApiKeyRecord | undefined => {
      const s = this.#split(key);
      return s === undefined ? undefined : s.backend.keys.apiKey(s.name, id);
    },
    apiKeyCount: (key: string): number => {
      const s = this.#split(key);
      return s === undefined ? 0 : s.backend.keys.apiKeyCount(s.name);
    },
  };

  servesNamespace(namespace: string): boolean {
    return namespace !== this.defaultNamespace && this.#scopes.has(namespace);
  }

  get namespaces(): string[] {
    return [...this.#scopes.keys()];
  }

  key(namespace: string, name: string): string {
    return namespace === this.defaultNamespace ? name : `${namespace}/${name}`;
  }

  /** `team-a/hello` → team-a's backend and `hello`; `hello` → the default namespace's. */
  #split(key: string): { ns: string; name: string; backend: KubeBackend } | undefined {
    const slash = key.indexOf("/");
    const ns = slash < 0 ? this.defaultNamespace : key.slice(0, slash);
    const name = slash < 0 ? key : key.slice(slash + 1);
    const backend = this.#scopes.get(ns)?.backend;
    return backend === undefined || name === "" ? undefined : { ns, name, backend };
  }

  #relabel(ns: string, fn: FunctionResource | undefined): FunctionResource | undefined {
    if (fn === undefined || ns === this.defaultNamespace) return fn;
    const key = this.key(ns, fn.metadata.name);
    const cached = this.#relabelled.get(key);
    if (cached?.from === fn) return cached.to;
    const to: FunctionResource = { ...fn, metadata: { ...fn.metadata, name: key, namespace: ns } };
    this.#relabelled.set(key, { from: fn, to });
    return to;
  }

  async start(listener: BackendListener, load: LoadView): Promise<void> {
    this.#listener = listener;
    this.#load = load;
    for (const [ns, scope] of this.#scopes) scope.started = this.#startScope(ns, scope, listener, load);
    await Promise.all([...this.#scopes.values()].map((s) => s.started));
    if (this.#allFunctions !== undefined) {
      // Synced: every namespace with a Function has its backend, started below.
      await this.#allFunctions.start();
      await Promise.all([...this.#scopes.values()].map((s) => s.started));
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#allFunctions?.stop();
    await Promise.all([...this.#scopes.values()].map((s) => s.backend.stop()));
  }

  getFunction(key: string): FunctionResource | undefined {
    const s = this.#split(key);
    return s === undefined ? undefined : this.#relabel(s.ns, s.backend.getFunction(s.name));
  }

  listFunctions(): FunctionResource[] {
    return [...this.#scopes].flatMap(([ns, s]) =>
      s.backend.listFunctions().map((f) => this.#relabel(ns, f) as FunctionResource),
    );
  }

  status(key: string): FunctionStatus | undefined {
    const s = this.#split(key);
    const st = s?.backend.status(s.name);
    return st === undefined ? undefined : { ...st, name: key };
  }

  scaleUp(key: string, replicas: number): Promise<ScaleUpResult> {
    const s = this.#split(key);
    if (s === undefined) return Promise.reject(new Error(`no namespace served for ${key}`));
    return s.backend.scaleUp(s.name, replicas);
  }

  endpointFailed(key: string, endpointId: string, reason: string): void {
    const s = this.#split(key);
    s?.backend.endpointFailed(s.name, endpointId, reason);
  }

  ready(): boolean {
    return (this.#allFunctions?.synced ?? true) && [...this.#scopes.values()].every((s) => s.backend.ready());
  }

  /**
   * Each namespace's backend has the same metrics; they are served once each,
   * with a `namespace` label, summed from the backends' own. The API client is
   * shared, so its metrics are registered once, as they are.
   */
  registerMetrics(registry: Registry): void {
    this.client.metrics.register(registry);
    const own = new Registry();
    this.client.metrics.register(own);
    const shared = new Set((own.getMetricsAsArray() as unknown as MetricLike[]).map((m) => m.name));
    const scopes = this.#scopes;
    const template = (scopes.get(this.defaultNamespace)?.registry.getMetricsAsArray() ?? []) as unknown as MetricLike[];
    for (const m of template) {
      if (shared.has(m.name)) continue;
      const name = m.name;
      // Summed at each scrape from every namespace's backend, those started since included.
      const collect = async function (this: Counter | Gauge): Promise<void> {
        this.reset();
        for (const [ns, scope] of scopes) {
          const metric = scope.registry.getSingleMetric(name) as unknown as MetricLike | undefined;
          if (metric === undefined) continue;
          for (const v of (await metric.get()).values) {
            const labels = { ...v.labels, namespace: ns };
            if (this instanceof Counter) this.inc(labels, v.value);
            else this.set(labels, v.value);
          }
        }
      };
      const def = {
        name,
        help: m.help,
        labelNames: ["namespace", ...(m.labelNames ?? [])],
        registers: [registry],
        collect,
      };
      if (m.type === "counter") new Counter(def);
      else if (m.type === "gauge") new Gauge(def);
      // Other kinds are not kept per namespace by the backend.
    }
  }
}

interface MetricLike {
  name: string;
  help: string;
  type: string;
  labelNames?: string[];
  get(): Promise<{ values: { labels: Record<string, string | number>; value: number }[] }>;
}
