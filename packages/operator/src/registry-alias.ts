/**
 * How pods reach the platform's package registry by name (ADR 0016). Packages
 * on Kubernetes name it `http://faas-registry.faas-system.svc:5000`; a cluster
 * without DNS for Services (the project's own) cannot resolve that, so pods
 * that pull packages get a `hostAliases` entry mapping the name to the
 * Service's ClusterIP. With cluster DNS the entry says what DNS would.
 * A ClusterIP never changes while its Service exists, but a Service deleted
 * and applied again gets a new one: a found address is looked up again after
 * a minute (kept if that lookup fails); while there is no registry, at most
 * every 10 s.
 */
import { REGISTRY_HOST, REGISTRY_SERVICE, SYSTEM_NAMESPACE } from "@faas/api";
import { type KubeClient, RESOURCES } from "@faas/kube";
import type { V1HostAlias } from "@kubernetes/client-node";

const RETRY_MS = 10_000;
const REFRESH_MS = 60_000;

interface ServiceLike {
  spec?: { clusterIP?: string };
}

export class RegistryAlias {
  #ip: string | undefined;
  #foundAt = -Infinity;
  #lastMiss = -Infinity;
  #pending: Promise<string | undefined> | undefined;

  constructor(
    private readonly client: Pick<KubeClient, "find">,
    private readonly now: () => number = Date.now,
  ) {}

  /** `hostAliases` for a pod that may pull from the platform's registry (empty when there is none). */
  async hostAliases(): Promise<V1HostAlias[]> {
    const ip = await this.#address();
    return ip === undefined ? [] : [{ ip, hostnames: [REGISTRY_HOST] }];
  }

  async #address(): Promise<string | undefined> {
    if (this.#ip !== undefined && this.now() - this.#foundAt < REFRESH_MS) return this.#ip;
    if (this.#ip === undefined && this.now() - this.#lastMiss < RETRY_MS) return undefined;
    this.#pending ??= this.#lookUp().finally(() => {
      this.#pending = undefined;
    });
    return this.#pending;
  }

  async #lookUp(): Promise<string | undefined> {
    try {
      const svc = await this.client.find<ServiceLike>({
        ...RESOURCES.services,
        namespace: SYSTEM_NAMESPACE,
        name: REGISTRY_SERVICE,
      });
      const ip = svc?.spec?.clusterIP;
      if (ip !== undefined && ip !== "" && ip !== "None") {
        this.#ip = ip;
        this.#foundAt = this.now();
        return ip;
      }
      // The Service is gone (or headless): no alias any more.
      this.#ip = undefined;
    } catch {
      // No access or no answer: keep what was known; without it pods go without the alias.
      if (this.#ip !== undefined) {
        this.#foundAt = this.now();
        return this.#ip;
      }
    }
    this.#lastMiss = this.now();
    return undefined;
  }
}
