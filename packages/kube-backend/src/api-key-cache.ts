/**
 * The gateway's view of the namespace's API keys (ADR 0011): a watch on the one
 * Secret `faas-api-keys` (by name, which is all the gateway's RBAC allows),
 * indexed by function and key id on every change. A revocation is a watch
 * event away — milliseconds — on every gateway replica.
 */
import { API_KEYS_SECRET, type ApiKeyRecord } from "@faas/api";
import type { KeyLookup } from "@faas/gateway";
import { apiKeyRecords, type KubeClient, RESOURCES, Reflector, type SecretObject } from "@faas/kube";
import type { Logger } from "pino";

export class ApiKeyCache implements KeyLookup {
  readonly #secret: Reflector<SecretObject>;
  /** function → key id → record. */
  #index = new Map<string, Map<string, ApiKeyRecord>>();

  /** `functionUid(fn)`: the uid of the Function the gateway knows now; keys made for another one do not count. */
  constructor(
    client: KubeClient,
    namespace: string,
    private readonly functionUid: (fn: string) => string | undefined,
    log: Logger,
  ) {
    this.#secret = new Reflector<SecretObject>(
      client,
      { resource: { ...RESOURCES.secrets, namespace }, fieldSelector: `metadata.name=${API_KEYS_SECRET}` },
      log,
    );
    const rebuild = (): void => this.#rebuild();
    this.#secret.on("add", rebuild);
    this.#secret.on("update", rebuild);
    this.#secret.on("delete", rebuild);
  }

  start(): Promise<void> {
    return this.#secret.start();
  }

  stop(): void {
    this.#secret.stop();
  }

  get synced(): boolean {
    return this.#secret.synced;
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
