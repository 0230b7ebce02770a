/**
 * The controller: reflectors on Functions and the kinds they own feed a work
 * queue keyed by Function; the queue runs reconciles only while this process
 * leads (or always, without leader election). Caches stay warm on followers so
 * a new leader starts at once.
 */
import { CLAIMED_FOR_LABEL, FUNCTION_LABEL, type FunctionSpec, parseFunction } from "@faas/api";
import { type KubeClient, type KubeObject, LeaderElector, objectKey, RESOURCES, Reflector } from "@faas/kube";
import type { Logger } from "pino";
import type { OperatorConfig } from "./config.js";
import { EventRecorder } from "./events.js";
import { IdleScaler } from "./idle-scaler.js";
import type { DeploymentObject, PodObject, RawFunction } from "./kinds.js";
import { NetworkPolicyKeeper } from "./network-policy-keeper.js";
import { PoolKeeper } from "./pool-keeper.js";
import { FunctionReconciler } from "./reconciler.js";
import { ReferenceAccessKeeper } from "./reference-access.js";
import { GatewayAlias, RegistryAlias } from "./registry-alias.js";
import { type DigestedObject, digestData, refersTo } from "./resources/references.js";
import { WorkQueue } from "./work-queue.js";

export interface OperatorOptions {
  now?: () => number;
}

export class Operator {
  readonly functions: Reflector<RawFunction>;
  readonly #owned: {
    deployments: Reflector<DeploymentObject>;
    configmaps: Reflector<KubeObject>;
    services: Reflector<KubeObject>;
    hpas: Reflector<KubeObject>;
    pods: Reflector<PodObject>;
  };
  /**
   * Every Secret and ConfigMap in the namespaces served, reduced to a digest of
   * their data on arrival: a change to one a function refers to rolls it.
   */
  readonly #referenced: { secrets: Reflector<DigestedObject>; referenced: Reflector<DigestedObject> };
  readonly #queue: WorkQueue;
  readonly #reconciler: FunctionReconciler;
  readonly #idle: IdleScaler;
  /** Pods gateways claimed from the warm pool (not function children: no function label). */
  readonly #claimedPods: Reflector<PodObject>;
  readonly pool: PoolKeeper;
  /** With a warm pool: the gateway's `get` on the Secrets and ConfigMaps Functions take env from, by name. */
  readonly #references: ReferenceAccessKeeper | undefined;
  readonly networkPolicies: NetworkPolicyKeeper;
  readonly #elector: LeaderElector | undefined;
  /** Aborted when leadership is lost: in-flight reconciles stop before their next write. */
  #leadership = new AbortController();
  #leading = false;
  #resyncTimer: NodeJS.Timeout | undefined;
  /** Keys whose next reconcile applies everything even if nothing seems changed. */
  readonly #forced = new Set<string>();
  reconciles = 0;
  #synced = false;

  /** The Deployments of Functions as this operator has seen them (its idle scaler reads these). */
  get deployments(): Reflector<DeploymentObject> {
    return this.#owned.deployments;
  }
  #stopped = false;

  constructor(
    readonly client: KubeClient,
    private readonly cfg: OperatorConfig,
    private readonly log: Logger,
    opts: OperatorOptions = {},
  ) {
    const now = opts.now ?? Date.now;
    const ns = cfg.namespace;
    const reflect = <T extends KubeObject>(
      resource: (typeof RESOURCES)[keyof typeof RESOURCES],
      labelSelector?: string,
      transform?: (obj: T) => T,
    ) =>
      new Reflector<T>(
        client,
        { resource: { ...resource, namespace: ns }, labelSelector, transform },
        log.child({ reflector: resource.plural }),
      );
    this.functions = reflect<RawFunction>(RESOURCES.functions);
    this.#owned = {
      deployments: reflect<DeploymentObject>(RESOURCES.deployments, FUNCTION_LABEL),
      configmaps: reflect(RESOURCES.configmaps, FUNCTION_LABEL),
      services: reflect(RESOURCES.services, FUNCTION_LABEL),
      hpas: reflect(RESOURCES.hpas, FUNCTION_LABEL),
      pods: reflect<PodObject>(RESOURCES.pods, FUNCTION_LABEL),
    };
    this.#referenced = {
      secrets: reflect<DigestedObject>(RESOURCES.secrets, undefined, digestData),
      referenced: reflect<DigestedObject>(RESOURCES.configmaps, undefined, digestData),
    };
    const events = new EventRecorder(client, cfg.identity, log);
    const registry = new RegistryAlias(client, now);
    this.#reconciler = new FunctionReconciler({
      client,
      cfg,
      caches: { ...this.#owned, ...this.#referenced },
      events,
      log,
      now: () => new Date(now()),
      registry,
      gateway: new GatewayAlias(client, cfg.gatewayNamespace, now),
    });
    this.#queue = new WorkQueue(
      (key) => this.#reconcileKey(key),
      { concurrency: cfg.workers, retryBaseMs: cfg.retryBaseMs, retryMaxMs: cfg.retryMaxMs },
      (key, err, retryInMs) => {
        if ((err as Error).name !== "AbortError")
          log.warn({ fn: key, err: (err as Error).message, retryInMs }, "reconcile failed; will retry");
      },
      true,
    );
    this.#idle = new IdleScaler({
      client,
      functions: this.functions,
      deployments: this.#owned.deployments,
      events,
      log,
      now,
      intervalMs: cfg.idleCheckIntervalMs,
      onScaledToZero: (key) => this.#queue.add(key),
    });
    this.#claimedPods = reflect<PodObject>(RESOURCES.pods, CLAIMED_FOR_LABEL);
    this.pool = new PoolKeeper({
      client,
      cfg,
      functions: this.functions,
      deployments: this.#owned.deployments,
      claimedPods: this.#claimedPods,
      log: log.child({ component: "pool" }),
      now,
      registry,
    });
    if (Object.values(cfg.poolSize).some((n) => n > 0)) {
      this.#references = new ReferenceAccessKeeper({
        client,
        functions: this.functions,
        log: log.child({ component: "reference-access" }),
      });
    }
    this.networkPolicies = new NetworkPolicyKeeper({
      client,
      cfg,
      namespaces: () => this.pool.namespaces(),
      log: log.child({ component: "network-policy" }),
    });
    if (cfg.leaderElection) {
      this.#elector = new LeaderElector(
        client,
        { namespace: cfg.leaseNamespace, name: cfg.leaseName, identity: cfg.identity },
        log.child({ component: "leader-election" }),
      );
    }
  }

  /** True once every cache has listed. */
  get synced(): boolean {
    return this.#synced;
  }

  get isLeader(): boolean {
    return this.#leading;
  }

  async start(): Promise<void> {
    this.#wire();
    await Promise.all([
      this.functions.start(),
      this.#claimedPods.start(),
      ...Object.values(this.#owned).map((r) => r.start()),
      ...Object.values(this.#referenced).map((r) => r.start()),
    ]);
    if (this.#stopped) return;
    this.#synced = true;
    this.log.info(
      { namespace: this.cfg.namespace ?? "(all)", functions: this.functions.list().length },
      "caches synced",
    );
    if (this.#elector) {
      this.#elector.on("started", () => this.#setLeading(true));
      this.#elector.on("stopped", () => this.#setLeading(false));
      this.#elector.start();
    } else {
      this.#setLeading(true);
    }
    this.#resyncTimer = setInterval(() => this.#enqueueAll(true), this.cfg.resyncSeconds * 1000);
    this.#resyncTimer.unref();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#resyncTimer);
    this.#setLeading(false);
    await this.#elector?.stop();
    await this.#queue.close();
    this.functions.stop();
    this.#claimedPods.stop();
    for (const r of Object.values(this.#owned)) r.stop();
    for (const r of Object.values(this.#referenced)) r.stop();
  }

  #setLeading(leading: boolean): void {
    if (leading === this.#leading) return;
    this.#leading = leading;
    this.#idle.setEnabled(leading);
    this.pool.setEnabled(leading);
    this.networkPolicies.setEnabled(leading);
    if (leading) {
      this.#leadership = new AbortController();
      this.#reconciler.resetMemory();
      this.#enqueueAll(true);
      this.#queue.resume();
      this.#references?.reset();
      for (const ns of new Set(this.functions.list().map((f) => f.metadata.namespace ?? "default"))) {
        void this.#references?.sync(ns);
      }
    } else {
      this.#leadership.abort();
      this.#queue.pause();
    }
  }

  #enqueueAll(force: boolean): void {
    for (const fn of this.functions.list()) {
      const key = objectKey(fn);
      if (force) this.#forced.add(key);
      this.#queue.add(key);
    }
  }

  #wire(): void {
    const access = (fn: RawFunction): void => {
      if (this.#leading) void this.#references?.sync(fn.metadata.namespace ?? "default");
    };
    this.functions.on("add", (fn) => {
      this.#queue.add(objectKey(fn));
      if (this.#leading) {
        void this.pool.ensure(fn.metadata.namespace ?? "default");
        void this.networkPolicies.ensure(fn.metadata.namespace ?? "default");
      }
      access(fn);
    });
    this.functions.on("update", (fn, old) => {
      // Annotation- and status-only changes (gateways stamping activity, our own
      // status writes) leave the generation alone and need no reconcile.
      if (fn.metadata.generation !== old.metadata.generation || fn.metadata.uid !== old.metadata.uid) {
        this.#queue.add(objectKey(fn));
        access(fn);
      }
    });
    this.functions.on("delete", (fn) => {
      access(fn);
      const key = objectKey(fn);
      this.#queue.forget(key);
      this.#reconciler.forget(key);
      this.#forced.delete(key);
    });
    const ownerKey = (o: KubeObject): string | undefined => {
      const name = o.metadata.labels?.[FUNCTION_LABEL];
      return name && o.metadata.namespace ? `${o.metadata.namespace}/${name}` : undefined;
    };
    const enqueueOwner = (o: KubeObject): void => {
      const key = ownerKey(o);
      if (key && this.functions.get(key)) this.#queue.add(key);
    };
    for (const r of Object.values(this.#owned) as Reflector<KubeObject>[]) {
      r.on("add", enqueueOwner);
      r.on("update", enqueueOwner);
      r.on("delete", enqueueOwner);
    }
    this.#owned.deployments.on("add", (d) => {
      this.#idle.observe(d, undefined);
      this.pool.observeDeployment(d);
    });
    this.#owned.deployments.on("update", (d, old) => {
      this.#idle.observe(d, old);
      this.pool.observeDeployment(d);
    });
    this.#owned.deployments.on("delete", (d) => {
      this.#idle.forget(d);
      this.pool.observeDeployment(d, true);
    });
    const enqueueReferring = (kind: "secret" | "configmap") => (o: KubeObject) => {
      for (const fn of this.functions.list()) {
        if (fn.metadata.namespace !== o.metadata.namespace) continue;
        const spec = specOf(fn);
        if (spec === undefined || !refersTo(spec, kind, o.metadata.name)) continue;
        this.log.info({ fn: objectKey(fn), [kind]: o.metadata.name }, "a referenced object changed");
        this.#queue.add(objectKey(fn));
      }
    };
    for (const [kind, r] of [
      ["secret", this.#referenced.secrets],
      ["configmap", this.#referenced.referenced],
    ] as const) {
      const enqueue = enqueueReferring(kind);
      r.on("add", enqueue);
      r.on("update", (o, old) => {
        if (o.digest !== old.digest) enqueue(o);
      });
      r.on("delete", enqueue);
    }
    // A claimed pod's hand-off is due a moment after the Deployment's pod is ready: check at once too.
    this.#claimedPods.on("add", () => void this.pool.retireClaimedPods());
  }

  async #reconcileKey(key: string) {
    const fn = this.functions.get(key);
    if (fn === undefined || !this.#leading) return undefined;
    const force = this.#forced.delete(key);
    this.reconciles++;
    const started = performance.now();
    const result = await this.#reconciler.reconcile(fn, { force, signal: this.#leadership.signal });
    this.log.debug({ fn: key, ms: Math.round(performance.now() - started), force }, "reconciled");
    return result;
  }
}

/** The parsed spec of a cached Function, or undefined when it is invalid (its reconcile says why). */
function specOf(fn: RawFunction): FunctionSpec | undefined {
  try {
    return parseFunction(fn).spec;
  } catch {
    return undefined;
  }
}
