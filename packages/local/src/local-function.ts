/** One function in local mode: its definition, the code its replicas must run, and its runner processes. */
import { type FaasError, type FunctionResource, type LoadSpec, toLoadSpec } from "@faas/api";
import type { ScaleUpResult } from "@faas/gateway";
import type { ResolvedFunction } from "./resolver.js";
import type { RunnerProcess } from "./runner-process.js";

export interface LocalFunction {
  resource: FunctionResource;
  /** With the values of the secrets and configs it refers to: never stored, never logged. */
  load: LoadSpec;
  /** Set when a secret or config it refers to is missing: no replica can start. */
  unresolved: FaasError | undefined;
  /** The code every routed replica runs; a replica started for another hash is never routed. */
  hash: string;
  replicas: RunnerProcess[];
  /** Replicas being started. */
  pending: number;
  /**
   * The loads of replicas being started, by the code they load: those of an
   * older code are superseded when the code changes (no request goes to them
   * from then on).
   */
  starting: Set<{ hash: string; supersede(): void }>;
  /** The scale-up in progress, which callers asking for no more replicas join. */
  batch: Promise<ScaleUpResult> | undefined;
  lastScaleUpAt: number;
  /** Since when there have been more replicas than the load needs. */
  excessSince: number | undefined;
}

export function newLocalFunction(resource: FunctionResource, resolved: ResolvedFunction | FaasError): LocalFunction {
  const ok = "load" in resolved;
  return {
    resource,
    load: ok ? resolved.load : toLoadSpec(resource),
    unresolved: ok ? undefined : resolved,
    hash: ok ? resolved.hash : "unresolved",
    replicas: [],
    pending: 0,
    starting: new Set(),
    batch: undefined,
    lastScaleUpAt: 0,
    excessSince: undefined,
  };
}
