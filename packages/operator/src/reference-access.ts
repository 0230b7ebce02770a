/**
 * What a gateway may read so that a warm pool pod can serve a function that
 * takes its environment from Secrets and ConfigMaps (ADR 0013): `get` on
 * exactly the objects the namespace's Functions name in `env` and `envFrom` —
 * no `list`, no `watch`, no other name. The operator keeps one Role per
 * namespace, `faas-gateway-references`, bound to the gateway's service account,
 * and deletes it when no Function there refers to anything (an empty
 * `resourceNames` would mean every name, so it is never written).
 */
import {
  envReferences,
  type FunctionSpec,
  GATEWAY_SERVICE,
  OPERATOR_FIELD_MANAGER,
  parseFunction,
  SYSTEM_NAMESPACE,
} from "@faas/api";
import type { KubeClient, Reflector } from "@faas/kube";
import type { Logger } from "pino";
import type { RawFunction } from "./kinds.js";
import { MANAGED_BY, MANAGED_BY_LABEL } from "./resources/labels.js";

export const REFERENCE_ROLE = "faas-gateway-references";

const ROLES = { group: "rbac.authorization.k8s.io", version: "v1", plural: "roles" };
const BINDINGS = { group: "rbac.authorization.k8s.io", version: "v1", plural: "rolebindings" };

/** Secrets and ConfigMaps named by env and envFrom (mounts do not go to pool pods: they need a pod of their own). */
export { envReferences };

/** The Role, or undefined when nothing is referenced (then it must not exist). */
export function buildReferenceRole(
  namespace: string,
  refs: { secrets: string[]; configMaps: string[] },
): Record<string, unknown> | undefined {
  const rules: Record<string, unknown>[] = [];
  if (refs.secrets.length > 0)
    rules.push({ apiGroups: [""], resources: ["secrets"], resourceNames: refs.secrets, verbs: ["get"] });
  if (refs.configMaps.length > 0) {
    rules.push({ apiGroups: [""], resources: ["configmaps"], resourceNames: refs.configMaps, verbs: ["get"] });
  }
  if (rules.length === 0) return undefined;
  return {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "Role",
    metadata: { name: REFERENCE_ROLE, namespace, labels: { [MANAGED_BY_LABEL]: MANAGED_BY } },
    rules,
  };
}

export function buildReferenceBinding(
  namespace: string,
  gateway: { namespace: string; serviceAccount: string },
): Record<string, unknown> {
  return {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "RoleBinding",
    metadata: { name: REFERENCE_ROLE, namespace, labels: { [MANAGED_BY_LABEL]: MANAGED_BY } },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: REFERENCE_ROLE },
    subjects: [{ kind: "ServiceAccount", name: gateway.serviceAccount, namespace: gateway.namespace }],
  };
}

export class ReferenceAccessKeeper {
  /** Namespace → the names last written (JSON), so an unchanged set is not written again. */
  readonly #written = new Map<string, string>();
  readonly #running = new Map<string, Promise<void>>();
  readonly #again = new Set<string>();

  constructor(
    private readonly deps: {
      client: KubeClient;
      functions: Reflector<RawFunction>;
      log: Logger;
      gateway?: { namespace: string; serviceAccount: string };
    },
  ) {}

  /** Brings the namespace's Role in line with its Functions; one run per namespace at a time, the last change wins. */
  sync(namespace: string): Promise<void> {
    const running = this.#running.get(namespace);
    if (running !== undefined) {
      this.#again.add(namespace);
      return running;
    }
    const run = this.#sync(namespace)
      .catch((err: unknown) =>
        this.deps.log.warn({ namespace, err: (err as Error).message }, "gateway reference access: not updated"),
      )
      .finally(() => {
        this.#running.delete(namespace);
        if (this.#again.delete(namespace)) void this.sync(namespace);
      });
    this.#running.set(namespace, run);
    return run;
  }

  /** Forget what was written: the next sync of each namespace writes again (a new leader). */
  reset(): void {
    this.#written.clear();
  }

  async #sync(namespace: string): Promise<void> {
    const specs: FunctionSpec[] = [];
    for (const raw of this.deps.functions.list()) {
      if ((raw.metadata.namespace ?? "default") !== namespace) continue;
      try {
        specs.push(parseFunction({ ...raw, metadata: { name: raw.metadata.name } }).spec);
      } catch {
        // An invalid Function grants nothing.
      }
    }
    const refs = envReferences(specs);
    const want = JSON.stringify(refs);
    if (this.#written.get(namespace) === want) return;
    const { client } = this.deps;
    const role = buildReferenceRole(namespace, refs);
    if (role === undefined) {
      // (A 404 is fine: delete says false.)
      await client.delete({ ...BINDINGS, namespace, name: REFERENCE_ROLE });
      await client.delete({ ...ROLES, namespace, name: REFERENCE_ROLE });
    } else {
      await client.apply({ ...ROLES, namespace, name: REFERENCE_ROLE }, role, OPERATOR_FIELD_MANAGER);
      await client.apply(
        { ...BINDINGS, namespace, name: REFERENCE_ROLE },
        buildReferenceBinding(
          namespace,
          this.deps.gateway ?? { namespace: SYSTEM_NAMESPACE, serviceAccount: GATEWAY_SERVICE },
        ),
        OPERATOR_FIELD_MANAGER,
      );
    }
    this.#written.set(namespace, want);
    this.deps.log.info(
      { namespace, secrets: refs.secrets.length, configMaps: refs.configMaps.length },
      role === undefined ? "gateway reference access: none needed" : "gateway reference access: granted by name",
    );
  }
}
