/**
 * What a function's spec asks of Secrets and ConfigMaps: the names it refers
 * to (the operator watches them; local mode resolves them from its own
 * store), and the environment that needs no lookup.
 */
import type { FunctionSpec } from "./function-spec.js";

export interface References {
  /** Secrets named by env, envFrom or secrets mounts, sorted, once each. */
  secrets: string[];
  /** ConfigMaps named by env or envFrom, sorted, once each. */
  configMaps: string[];
}

export function references(spec: FunctionSpec): References {
  const secrets = new Set<string>();
  const configMaps = new Set<string>();
  for (const e of spec.env) {
    if (e.valueFrom?.secretKeyRef) secrets.add(e.valueFrom.secretKeyRef.name);
    if (e.valueFrom?.configMapKeyRef) configMaps.add(e.valueFrom.configMapKeyRef.name);
  }
  for (const e of spec.envFrom ?? []) {
    if (e.secretRef) secrets.add(e.secretRef.name);
    if (e.configMapRef) configMaps.add(e.configMapRef.name);
  }
  for (const m of spec.secrets ?? []) secrets.add(m.name);
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
