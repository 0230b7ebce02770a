/**
 * The gateway's view of the namespace's API keys (ADR 0011): a watch on the one
 * Secret `faas-api-keys` (by name, which is all the gateway's RBAC allows),
 * indexed by function and key id on every change. A revocation is a watch
 * event away — milliseconds — on every gateway replica.
 */
import { API_KEYS_SECRET, type ApiKeyRecord } from "@faas/api";
import type { KeyLookup } from "@faas/gateway";
import { apiKeyRecords, type KubeClient, KubeError, RESOURCES, Reflector, type SecretObject } from "@faas/kube";
import type { Logger } from "pino";

export class ApiKeyCache implements KeyLookup {
  readonly #secret: Reflector<SecretObject>;
  /** function → key id → record. */
  #index = new Map<string, Map<string, ApiKeyRecord>>();
  /**
   * The gateway may not read the Secret (its RBAC lacks the rule): it serves
   * anyway, and functions with `auth: apiKey` refuse every key (fail closed)
   * until a later list succeeds.
   */
  #forbidden = false;
  #onForbidden: (() => void) | undefined;

  /** `functionUid(fn)`: the uid of the Function the gateway knows now; keys made for another one do not count. */
  constructor(
    client: KubeClient,
    namespace: string,
    private readonly functionUid: (fn: string) => string | undefined,
    log: Logger,
  ) {
    this.#secret = new Reflector<SecretObject>(
      client,
      {
        resource: { ...RESOURCES.secrets, namespace },
        fieldSelector: `metadata.name=${API_KEYS_SECRET}`,
        onError: (err) => {
          if (!(err instanceof KubeError && err.status === 403) || this.#forbidden) return;
          this.#forbidden = true;
          log.error(
            { namespace, secret: API_KEYS_SECRET },
            "this gateway may not read the API keys' Secret: functions with auth apiKey refuse every request until its RBAC allows it (see gateway-deploy.yaml)",
          );
          this.#onForbidden?.();
        },
      },
      log,
    );
    const rebuild = (): void => this.#rebuild();
    this.#secret.on("add", rebuild);
    this.#secret.on("update", rebuild);
    this.#secret.on("delete", rebuild);
  }

  /** Resolves once the Secret was read, or once it is known that it may not be. */
  start(): Promise<void> {
    const forbidden = new Promise<void>((resolve) => {
      this.#onForbidden = resolve;
    });
    return Promise.race([this.#secret.start(), forbidden]);
  }

  stop(): void {
    this.#secret.stop();
  }

  get synced(): boolean {
    return this.#secret.synced || this.#forbidden;
  }

  #rebuild(): void {
    const index = new Map<string, Map<string, ApiKeyRecord>>();
    for (const secret of this.#secret.list()) {
      for (const record of apiKeyRecords(secret)) {
        let byId = index.get(record.function);
        if (byId === undefined) {
          byId = new Map();
          index.set(record.function, byId);
        }
        byId.set(record.id, record);
      }
    }
    this.#index = index;
  }

  apiKey(fn: string, id: string): ApiKeyRecord | undefined {
    const record = this.#index.get(fn)?.get(id);
    return record !== undefined && this.#current(fn, record) ? record : undefined;
  }

  apiKeyCount(fn: string): number {
    let n = 0;
    for (const record of this.#index.get(fn)?.values() ?? []) if (this.#current(fn, record)) n++;
    return n;
  }

  #current(fn: string, record: ApiKeyRecord): boolean {
    return record.functionUid === undefined || record.functionUid === this.functionUid(fn);
  }
}
