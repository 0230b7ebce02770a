/**
 * How pods reach a platform Service by name: the package registry (ADR 0016),
 * the gateways' announce port (ADR 0018). Packages
 * on Kubernetes name it `http://faas-registry.faas-system.svc:5000`; a cluster
 * without DNS for Services (the project's own) cannot resolve that, so pods
 * that pull packages get a `hostAliases` entry mapping the name to the
 * Service's ClusterIP. With cluster DNS the entry says what DNS would.
 * A ClusterIP never changes while its Service exists, but a Service deleted
 * and applied again gets a new one: a found address is looked up again after
 * a minute (kept if that lookup fails); while there is no registry, at most
 * every 10 s.
 */
import { GATEWAY_SERVICE, REGISTRY_HOST, REGISTRY_SERVICE, SYSTEM_NAMESPACE } from "@faas/api";
import { type KubeClient, RESOURCES } from "@faas/kube";
import type { V1HostAlias } from "@kubernetes/client-node";

const RETRY_MS = 10_000;
const REFRESH_MS = 60_000;

interface ServiceLike {
  spec?: { clusterIP?: string };
}

/** `<service>.<namespace>.svc`, the name pods use for a platform Service. */
export const serviceHost = (service: string, namespace: string): string => `${service}.${namespace}.svc`;

export class ServiceAlias {
  #ip: string | undefined;
  #foundAt = -Infinity;
  #lastMiss = -Infinity;
  #pending: Promise<string | undefined> | undefined;

  constructor(
    private readonly client: Pick<KubeClient, "find">,
    private readonly service: { namespace: string; name: string },
    private readonly now: () => number = Date.now,
  ) {}

  /** The name pods use for the Service. */
  get host(): string {
    return serviceHost(this.service.name, this.service.namespace);
  }

  /** `hostAliases` for a pod that reaches the Service by name (empty when there is none). */
  async hostAliases(): Promise<V1HostAlias[]> {
    const ip = await this.#address();
    return ip === undefined ? [] : [{ ip, hostnames: [this.host] }];
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
        namespace: this.service.namespace,
        name: this.service.name,
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

/** The platform's package registry, `faas-registry.faas-system.svc` (ADR 0016). */
export class RegistryAlias extends ServiceAlias {
  constructor(client: Pick<KubeClient, "find">, now: () => number = Date.now) {
    super(client, { namespace: SYSTEM_NAMESPACE, name: REGISTRY_SERVICE }, now);
  }

  override get host(): string {
    return REGISTRY_HOST;
  }
}

/** The gateways' Service, `faas-gateway.<namespace>.svc`, for announcements (ADR 0018). */
export class GatewayAlias extends ServiceAlias {
  constructor(client: Pick<KubeClient, "find">, namespace: string, now: () => number = Date.now) {
    super(client, { namespace, name: GATEWAY_SERVICE }, now);
  }
}
