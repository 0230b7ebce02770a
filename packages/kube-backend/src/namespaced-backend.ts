/**
 * One gateway, Functions of several namespaces: a Kubernetes backend per
 * namespace behind one `Backend`. The gateway knows a function by a key: its
 * bare name in the default namespace (so `/invoke/hello` keeps its meaning),
 * `<namespace>/<name>` elsewhere — a Kubernetes name never holds a `/`, so a
 * key is never ambiguous. Every call is passed to the namespace's backend
 * with the bare name, and everything it reports comes back under the key.
 */
import type { FunctionResource } from "@faas/api";
import type { Backend, BackendListener, FunctionStatus, LoadView, ScaleUpResult } from "@faas/gateway";
import type { KubeClient } from "@faas/kube";
import { Counter, Gauge, Registry } from "prom-client";
import type { KubeBackend } from "./kube-backend.js";

export class NamespacedBackend implements Backend {
  readonly kind = "kubernetes";
  /** The key's form of each backend's resources, by namespace and generation. */
  readonly #relabelled = new Map<string, { from: FunctionResource; to: FunctionResource }>();

  constructor(
    private readonly client: KubeClient,
    /** Namespace → its backend. */
    private readonly backends: ReadonlyMap<string, KubeBackend>,
    readonly defaultNamespace: string,
  ) {
    if (!backends.has(defaultNamespace)) throw new Error(`the default namespace ${defaultNamespace} is not served`);
  }

  get namespaces(): string[] {
    return [...this.backends.keys()];
  }

  servesNamespace(namespace: string): boolean {
    return namespace !== this.defaultNamespace && this.backends.has(namespace);
  }

  key(namespace: string, name: string): string {
    return namespace === this.defaultNamespace ? name : `${namespace}/${name}`;
  }

  /** `team-a/hello` → team-a's backend and `hello`; `hello` → the default namespace's. */
  #split(key: string): { ns: string; name: string; backend: KubeBackend } | undefined {
    const slash = key.indexOf("/");
    const ns = slash < 0 ? this.defaultNamespace : key.slice(0, slash);
    const name = slash < 0 ? key : key.slice(slash + 1);
    const backend = this.backends.get(ns);
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
    await Promise.all(
      [...this.backends].map(([ns, backend]) => {
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
        return backend.start(scoped, view);
      }),
    );
  }

  async stop(): Promise<void> {
    await Promise.all([...this.backends.values()].map((b) => b.stop()));
  }

  getFunction(key: string): FunctionResource | undefined {
    const s = this.#split(key);
    return s === undefined ? undefined : this.#relabel(s.ns, s.backend.getFunction(s.name));
  }

  listFunctions(): FunctionResource[] {
    return [...this.backends].flatMap(([ns, b]) =>
      b.listFunctions().map((f) => this.#relabel(ns, f) as FunctionResource),
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
    return [...this.backends.values()].every((b) => b.ready());
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
    const shared = new Set(own.getMetricsAsArray().map((m) => (m as unknown as { name: string }).name));
    const perNamespace = [...this.backends].map(([ns, b]) => {
      const r = new Registry();
      b.registerMetrics(r);
      return { ns, metrics: r.getMetricsAsArray() as unknown as MetricLike[] };
    });
    const first = perNamespace[0]?.metrics ?? [];
    for (const m of first) {
      if (shared.has(m.name)) continue;
      const sources = perNamespace.map((p) => ({ ns: p.ns, metric: p.metrics.find((x) => x.name === m.name) }));
      const labelNames = ["namespace", ...(m.labelNames ?? [])];
      const collect = async function (this: Counter | Gauge): Promise<void> {
        this.reset();
        for (const { ns, metric } of sources) {
          if (metric === undefined) continue;
          for (const v of (await metric.get()).values) {
            const labels = { ...v.labels, namespace: ns };
            if (this instanceof Counter) this.inc(labels, v.value);
            else this.set(labels, v.value);
          }
        }
      };
      const def = { name: m.name, help: m.help, labelNames, registers: [registry], collect };
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
