/**
 * What a function's spec asks of Secrets and ConfigMaps: the names it refers
 * to (the operator watches them; local mode resolves them from its own
 * store), and the environment that needs no lookup.
 */
import { FaasError } from "./errors.js";
import type { FunctionSpec } from "./function-spec.js";

export interface References {
  /** Secrets named by env, envFrom or secrets mounts, sorted, once each. */
  secrets: string[];
  /** ConfigMaps named by env or envFrom, sorted, once each. */
  configMaps: string[];
}

export function references(spec: FunctionSpec): References {
  const fromEnv = envReferences([spec]);
  const secrets = new Set([...fromEnv.secrets, ...(spec.secrets ?? []).map((m) => m.name)]);
  return { secrets: [...secrets].sort(), configMaps: fromEnv.configMaps };
}

/** What `env` and `envFrom` name, over one or more specs (mounts left out): sorted, once each. */
export function envReferences(specs: readonly FunctionSpec[]): References {
  const secrets = new Set<string>();
  const configMaps = new Set<string>();
  for (const spec of specs) {
    for (const e of spec.env) {
      if (e.valueFrom?.secretKeyRef) secrets.add(e.valueFrom.secretKeyRef.name);
      if (e.valueFrom?.configMapKeyRef) configMaps.add(e.valueFrom.configMapKeyRef.name);
    }
    for (const e of spec.envFrom ?? []) {
      if (e.secretRef) secrets.add(e.secretRef.name);
      if (e.configMapRef) configMaps.add(e.configMapRef.name);
    }
  }
  return { secrets: [...secrets].sort(), configMaps: [...configMaps].sort() };
}

/** Whether anything in the spec comes from a Secret or a ConfigMap. */
export function hasReferences(spec: FunctionSpec): boolean {
  const r = references(spec);
  return r.secrets.length > 0 || r.configMaps.length > 0;
}

/** The `env` entries with a literal value: safe to store with the code. */
export function literalEnv(spec: FunctionSpec): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of spec.env) if (e.value !== undefined) out[e.name] = e.value;
  return out;
}

export type ReferenceKind = "secret" | "config";

/**
 * The values of one Secret (`secret`) or ConfigMap (`config`), by key; throws
 * (an error naming `field`) when there is no such object.
 */
export type ReferenceLookup = (kind: ReferenceKind, name: string, field: string) => Readonly<Record<string, string>>;

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * A function's environment with every reference resolved, as the kubelet
 * builds a container's: `envFrom` first (keys that are not variable names are
 * skipped, and so are the platform's own `FAAS_*`), then `env` entries, which
 * win. Throws INVALID_SPEC naming the field for a key a Secret or ConfigMap
 * does not have; the message never holds a value.
 */
export function resolveEnv(
  spec: FunctionSpec,
  lookup: ReferenceLookup,
  words: { noun?: (kind: ReferenceKind) => string; hint?: (kind: ReferenceKind) => string } = {},
): Record<string, string> {
  const env: Record<string, string> = {};
  (spec.envFrom ?? []).forEach((from, i) => {
    const [kind, name, field] = from.secretRef
      ? (["secret", from.secretRef.name, "secretRef"] as const)
      : (["config", from.configMapRef?.name ?? "", "configMapRef"] as const);
    const data = lookup(kind, name, `spec.envFrom.${i}.${field}`);
    for (const [key, value] of Object.entries(data)) {
      if (ENV_NAME.test(key) && !key.startsWith("FAAS_")) env[key] = value;
    }
  });
  spec.env.forEach((e, i) => {
    if (e.value !== undefined) {
      env[e.name] = e.value;
      return;
    }
    const ref = e.valueFrom?.secretKeyRef ?? e.valueFrom?.configMapKeyRef;
    if (ref === undefined) return;
    const kind: ReferenceKind = e.valueFrom?.secretKeyRef ? "secret" : "config";
    const field = `spec.env.${i}.valueFrom.${kind === "secret" ? "secretKeyRef" : "configMapKeyRef"}`;
    const value = lookup(kind, ref.name, field)[ref.key];
    if (value === undefined) {
      const what = words.noun?.(kind) ?? (kind === "secret" ? "Secret" : "ConfigMap");
      const hint = words.hint === undefined ? "" : ` (${words.hint(kind)})`;
      const message = `${field}: ${what} ${ref.name} has no key ${JSON.stringify(ref.key)}${hint}`;
      throw new FaasError("INVALID_SPEC", message, { details: { issues: [message] } });
    }
    env[e.name] = value;
  });
  return env;
}
