/**
 * API keys on Kubernetes (ADR 0011): the Secret `faas-api-keys` of a namespace
 * holds one entry per key, `<id>` → the JSON of its record (the key's sha256,
 * never the key). The CLI writes entries one by one with merge patches, so
 * concurrent writers never overwrite each other; gateways watch this one
 * Secret by name.
 */
import {
  API_KEYS_LABEL,
  API_KEYS_SECRET,
  type ApiKeyRecord,
  FaasError,
  isApiKeyId,
  parseApiKeyRecord,
} from "@faas/api";
import { type KubeClient, KubeError, type KubeObject, RESOURCES } from "./kube-client.js";

export interface SecretObject extends KubeObject {
  data?: Record<string, string>;
}

const FIELD_MANAGER = "faas-cli";

/** The records in the keys Secret; entries that are not records are skipped. */
export function apiKeyRecords(secret: SecretObject | undefined): ApiKeyRecord[] {
  const out: ApiKeyRecord[] = [];
  for (const [id, value] of Object.entries(secret?.data ?? {})) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.from(value, "base64").toString("utf8"));
    } catch {
      continue;
    }
    const record = parseApiKeyRecord(parsed);
    if (record?.id === id) out.push(record);
  }
  return out;
}

const encode = (record: ApiKeyRecord): string => Buffer.from(JSON.stringify(record)).toString("base64");

/** Stores one key's record: creates the Secret when the namespace has none yet. */
export async function storeApiKey(client: KubeClient, namespace: string, record: ApiKeyRecord): Promise<void> {
  const ref = { ...RESOURCES.secrets, namespace };
  const patch = { data: { [record.id]: encode(record) } };
  if ((await client.find<SecretObject>({ ...ref, name: API_KEYS_SECRET })) === undefined) {
    try {
      await client.create(
        ref,
        {
          apiVersion: "v1",
          kind: "Secret",
          type: "Opaque",
          metadata: { name: API_KEYS_SECRET, namespace, labels: { [API_KEYS_LABEL]: "true" } },
          ...patch,
        },
        FIELD_MANAGER,
      );
      return;
    } catch (err) {
      // Another writer created it first: add to theirs.
      if (!(err instanceof KubeError && err.status === 409)) throw err;
    }
  }
  await client.mergePatch({ ...ref, name: API_KEYS_SECRET }, patch, FIELD_MANAGER);
}

export async function readApiKeys(client: KubeClient, namespace: string): Promise<ApiKeyRecord[]> {
  return apiKeyRecords(await client.find<SecretObject>({ ...RESOURCES.secrets, namespace, name: API_KEYS_SECRET }));
}

/** Removes one key's entry; `false` when the namespace has no key with that id. */
export async function revokeApiKey(client: KubeClient, namespace: string, id: string): Promise<boolean> {
  if (!isApiKeyId(id)) throw new FaasError("BAD_REQUEST", `"${id}" is not an API key id (16 hex digits)`);
  const ref = { ...RESOURCES.secrets, namespace, name: API_KEYS_SECRET };
  const secret = await client.find<SecretObject>(ref);
  if (secret?.data?.[id] === undefined) return false;
  await client.mergePatch(ref, { data: { [id]: null } }, FIELD_MANAGER);
  return true;
}

/**
 * Removes the keys of a deleted Function: those made for `fn` with its `uid`
 * (or with no uid recorded). Keys made since for a new Function of the same
 * name (another uid) stay. Returns how many were removed.
 */
export async function removeFunctionApiKeys(
  client: KubeClient,
  namespace: string,
  fn: string,
  uid: string | undefined,
): Promise<number> {
  const ref = { ...RESOURCES.secrets, namespace, name: API_KEYS_SECRET };
  const ids = apiKeyRecords(await client.find<SecretObject>(ref))
    .filter((r) => r.function === fn && (r.functionUid === undefined || r.functionUid === uid))
    .map((r) => r.id);
  if (ids.length === 0) return 0;
  // Each entry by name, as revoke does: keys other writers add meanwhile are not touched.
  await client.mergePatch(ref, { data: Object.fromEntries(ids.map((id) => [id, null])) }, FIELD_MANAGER);
  return ids.length;
}
