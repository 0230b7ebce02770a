/** One function in local mode: its definition, the code its replicas must run, and its runner processes. */
import { codeHash, type FunctionResource, type LoadSpec, toLoadSpec } from "@faas/api";
import type { ScaleUpResult } from "@faas/gateway";
import type { RunnerProcess } from "./runner-process.js";

export interface LocalFunction {
  resource: FunctionResource;
  load: LoadSpec;
  /** The code every routed replica runs; a replica started for another hash is never routed. */
  hash: string;
  replicas: RunnerProcess[];
  /** Replicas being started. */
  pending: number;
  /** The scale-up in progress, which callers asking for no more replicas join. */
  batch: Promise<ScaleUpResult> | undefined;
  lastScaleUpAt: number;
  /** Since when there have been more replicas than the load needs. */
  excessSince: number | undefined;
}

export function newLocalFunction(resource: FunctionResource): LocalFunction {
  const load = toLoadSpec(resource);
  return {
    resource,
    load,
    hash: codeHash(load),
    replicas: [],
    pending: 0,
    batch: undefined,
    lastScaleUpAt: 0,
    excessSince: undefined,
  };
}
