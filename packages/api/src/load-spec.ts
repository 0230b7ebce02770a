/**
 * The load spec: what a runner needs to become a function (`POST /specialize`
 * body, or `function.json` in a code directory). See docs/runner-protocol.md.
 */
import { createHash } from "node:crypto";
import type { FunctionResource } from "./function-spec.js";
import type { Runtime } from "./names.js";
import { literalEnv } from "./references.js";

export interface LoadSpec {
  name: string;
  runtime: Runtime;
  handler: string;
  code: string;
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
  return { name: fn.metadata.name, runtime, handler, code, timeoutSeconds, env: literalEnv(fn.spec) };
}

/** A short content hash of what a runner loads: changes when code or config change. */
export function codeHash(spec: LoadSpec): string {
  return createHash("sha256")
    .update(JSON.stringify([spec.runtime, spec.handler, spec.code, spec.timeoutSeconds, spec.env]))
    .digest("hex")
    .slice(0, 16);
}
