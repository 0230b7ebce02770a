/**
 * The load spec: what a runner needs to become a function (`POST /specialize`
 * body, or `function.json` in a code directory). See docs/runner-protocol.md.
 */
import { createHash } from "node:crypto";
import type { FunctionResource } from "./function-spec.js";
import type { Runtime } from "./names.js";
import { literalEnv } from "./references.js";

/**
 * Where a runner finds a packaged function (docs/packages.md): `dir`, an
 * unpacked package root (local mode), or `registry` + `repository` to pull
 * `digest` from (Kubernetes).
 */
export interface LoadPackage {
  digest: string;
  dir?: string;
  registry?: string;
  repository?: string;
}

export interface LoadSpec {
  name: string;
  runtime: Runtime;
  handler: string;
  /** Inline code; absent when `package` is given. */
  code?: string;
  package?: LoadPackage;
  timeoutSeconds: number;
  env: Record<string, string>;
}

/**
 * The load spec of a function as written: `env` holds the literal values only.
 * Values from Secrets and ConfigMaps never go into it (it is stored in the code
 * ConfigMap on Kubernetes); the kubelet, or local mode's resolver, adds them.
 */
export function toLoadSpec(fn: FunctionResource): LoadSpec {
  const { runtime, handler, code, timeoutSeconds } = fn.spec;
  const spec: LoadSpec = { name: fn.metadata.name, runtime, handler, timeoutSeconds, env: literalEnv(fn.spec) };
  if (code !== undefined) spec.code = code;
  if (fn.spec.package !== undefined) spec.package = { ...fn.spec.package };
  return spec;
}

/** A short content hash of what a runner loads: changes when code or config change. */
export function codeHash(spec: LoadSpec): string {
  return createHash("sha256")
    .update(JSON.stringify([spec.runtime, spec.handler, spec.code ?? null, spec.timeoutSeconds, spec.env, pkgId(spec)]))
    .digest("hex")
    .slice(0, 16);
}

/** A package is the same whatever local path it was unpacked to. */
function pkgId(spec: LoadSpec): string | null {
  const p = spec.package;
  return p === undefined ? null : [p.digest, p.registry ?? "", p.repository ?? ""].join(" ");
}
