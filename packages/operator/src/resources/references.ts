/**
 * The Secrets and ConfigMaps a function refers to, as the operator sees them:
 * caches keep a digest of each object's data (never the data), and a
 * function's config hash — a digest of the digests of what it refers to — goes
 * on its pod template, so a changed Secret rolls its Deployment.
 */
import { createHash } from "node:crypto";
import { type FunctionSpec, references } from "@faas/api";
import type { KubeObject } from "@faas/kube";

/** A Secret or ConfigMap in a cache: its metadata and a digest of its data. */
export interface DigestedObject extends KubeObject {
  digest: string;
}

interface DataObject extends KubeObject {
  data?: Record<string, string>;
  binaryData?: Record<string, string>;
  stringData?: Record<string, string>;
}

/** Reflector transform: the data is hashed at once and dropped. */
export function digestData(obj: KubeObject): DigestedObject {
  const { data = {}, binaryData = {} } = obj as DataObject;
  const sorted = (r: Record<string, string>) =>
    Object.keys(r)
      .sort()
      .map((k) => [k, r[k]]);
  const digest = createHash("sha256")
    .update(JSON.stringify([sorted(data), sorted(binaryData)]))
    .digest("hex");
  const { name, namespace, uid, resourceVersion, generation } = obj.metadata;
  return {
    apiVersion: obj.apiVersion,
    kind: obj.kind,
    metadata: { name, namespace, uid, resourceVersion, generation },
    digest,
  };
}

export interface ReferenceLookup {
  secret(namespace: string, name: string): DigestedObject | undefined;
  configMap(namespace: string, name: string): DigestedObject | undefined;
}

export interface ConfigState {
  /** Digest of every referenced object's content; undefined when the function refers to none. */
  hash: string | undefined;
  /** References to objects that do not exist (yet): `Secret db`, `ConfigMap settings`. */
  missing: string[];
}

export function configState(spec: FunctionSpec, namespace: string, lookup: ReferenceLookup): ConfigState {
  const refs = references(spec);
  if (refs.secrets.length === 0 && refs.configMaps.length === 0) return { hash: undefined, missing: [] };
  const missing: string[] = [];
  const parts: string[] = [];
  for (const name of refs.secrets) {
    const digest = lookup.secret(namespace, name)?.digest;
    if (digest === undefined) missing.push(`Secret ${name}`);
    parts.push(`secret/${name}=${digest ?? "absent"}`);
  }
  for (const name of refs.configMaps) {
    const digest = lookup.configMap(namespace, name)?.digest;
    if (digest === undefined) missing.push(`ConfigMap ${name}`);
    parts.push(`configmap/${name}=${digest ?? "absent"}`);
  }
  return { hash: createHash("sha256").update(parts.join("\n")).digest("hex").slice(0, 16), missing };
}

/** Whether a function's spec refers to `kind/name`. */
export function refersTo(spec: FunctionSpec, kind: "secret" | "configmap", name: string): boolean {
  const refs = references(spec);
  return (kind === "secret" ? refs.secrets : refs.configMaps).includes(name);
}
