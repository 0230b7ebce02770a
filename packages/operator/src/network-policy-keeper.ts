/**
 * Keeps the NetworkPolicies of ADR 0012 while this operator leads: in every
 * namespace it serves, applied when leadership starts, when a namespace gets
 * its first Function, and again every resync period (a deleted or edited
 * policy comes back). With `networkPolicy` off it removes the policies it made
 * instead (only those labelled as managed by the operator).
 */
import { OPERATOR_FIELD_MANAGER } from "@faas/api";
import { type KubeClient, KubeError, type KubeObject, RESOURCES } from "@faas/kube";
import type { Logger } from "pino";
import type { OperatorConfig } from "./config.js";
import { MANAGED_BY, MANAGED_BY_LABEL } from "./resources/labels.js";
import { buildNetworkPolicies, ISOLATED_PODS } from "./resources/network-policy.js";

export interface NetworkPolicyKeeperDeps {
  client: Pick<KubeClient, "apply" | "find" | "delete">;
  cfg: Pick<OperatorConfig, "networkPolicy" | "gatewayNamespace" | "resyncSeconds">;
  /** The namespaces served right now. */
  namespaces: () => string[];
  log: Logger;
}

export class NetworkPolicyKeeper {
  #enabled = false;
  #timer: NodeJS.Timeout | undefined;
  /** Namespaces done in this leadership term (until the next resync). */
  readonly #done = new Set<string>();
  readonly #running = new Map<string, Promise<void>>();

  constructor(private readonly deps: NetworkPolicyKeeperDeps) {}

  /** Runs only while leading. */
  setEnabled(enabled: boolean): void {
    this.#enabled = enabled;
    clearInterval(this.#timer);
    this.#done.clear();
    if (!enabled) return;
    this.#timer = setInterval(() => {
      this.#done.clear();
      this.ensureAll();
    }, this.deps.cfg.resyncSeconds * 1000);
    this.#timer.unref();
    this.ensureAll();
  }

  ensureAll(): void {
    for (const ns of this.deps.namespaces()) void this.ensure(ns);
  }

  /** Applies (or, when turned off, removes) the policies of one namespace; once per term unless resynced. */
  ensure(ns: string): Promise<void> {
    if (!this.#enabled || this.#done.has(ns)) return Promise.resolve();
    const running = this.#running.get(ns);
    if (running) return running;
    const p = (this.deps.cfg.networkPolicy ? this.#apply(ns) : this.#remove(ns))
      .then(() => {
        this.#done.add(ns);
      })
      .catch((err: unknown) =>
        this.deps.log.warn({ namespace: ns, err: (err as Error).message }, "network policy: sync failed"),
      )
      .finally(() => this.#running.delete(ns));
    this.#running.set(ns, p);
    return p;
  }

  async #apply(ns: string): Promise<void> {
    for (const policy of buildNetworkPolicies(ns, this.deps.cfg)) {
      await this.deps.client.apply(
        { ...RESOURCES.networkpolicies, namespace: ns, name: policy.metadata.name },
        policy,
        OPERATOR_FIELD_MANAGER,
      );
    }
    this.deps.log.debug({ namespace: ns }, "network policy: applied");
  }

  async #remove(ns: string): Promise<void> {
    for (const { name } of ISOLATED_PODS) {
      const ref = { ...RESOURCES.networkpolicies, namespace: ns, name };
      const existing = await this.deps.client.find<KubeObject>(ref);
      if (existing?.metadata.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY) continue;
      try {
        await this.deps.client.delete(ref);
        this.deps.log.info({ namespace: ns, name }, "network policy: removed (turned off)");
      } catch (err) {
        if (!(err instanceof KubeError && err.status === 404)) throw err;
      }
    }
  }
}
