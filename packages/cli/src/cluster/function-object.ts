/**
 * The Function object as the cluster holds it: what `faas deploy` applies,
 * and what its status says about readiness (the operator's conditions Ready
 * and Progressing, packages/operator/src/status.ts).
 */
import { FUNCTION_API_VERSION, FUNCTION_KIND, type FunctionResource } from "@faas/api";

/** Field manager of the CLI's server-side applies. */
export const CLI_FIELD_MANAGER = "faas-cli";

export interface Condition {
  type: string;
  status: "True" | "False" | "Unknown";
  reason: string;
  message: string;
  observedGeneration?: number;
}

export interface ClusterFunction {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; generation?: number; deletionTimestamp?: string };
  spec: { runtime?: string; minReplicas?: number; maxReplicas?: number; [field: string]: unknown };
  status?: {
    observedGeneration?: number;
    replicas?: number;
    readyReplicas?: number;
    url?: string;
    conditions?: Condition[];
  };
}

/** The object to apply for a Function read from YAML or flags (already validated). */
export function functionObject(fn: FunctionResource, namespace: string): ClusterFunction {
  return {
    apiVersion: FUNCTION_API_VERSION,
    kind: FUNCTION_KIND,
    metadata: { name: fn.metadata.name, namespace },
    spec: { ...fn.spec },
  };
}

export type Readiness =
  | { state: "ready"; reason: string; message: string }
  | { state: "failed"; reason: string; message: string }
  | { state: "waiting"; message: string };

/** Progressing=False for these reasons means the roll-out is over and went well. */
const SETTLED = new Set(["RolloutComplete", "ScaledToZero"]);

/**
 * Ready when the operator has seen this generation, Ready is True and the
 * roll-out is over; failed when either condition names a problem (a crash
 * loop, a missing image, a spec the operator refused); waiting otherwise.
 */
export function readiness(fn: ClusterFunction): Readiness {
  const generation = fn.metadata.generation ?? 0;
  const status = fn.status;
  if (status === undefined || (status.observedGeneration ?? -1) < generation) {
    return { state: "waiting", message: "waiting for the operator to pick it up" };
  }
  const ready = status.conditions?.find((c) => c.type === "Ready");
  const progressing = status.conditions?.find((c) => c.type === "Progressing");
  if (ready === undefined) return { state: "waiting", message: "waiting for the operator to report" };
  if (ready.status === "False" && ready.reason !== "Progressing") {
    return { state: "failed", reason: ready.reason, message: ready.message };
  }
  if (progressing?.status === "False" && !SETTLED.has(progressing.reason)) {
    return { state: "failed", reason: progressing.reason, message: progressing.message };
  }
  if (ready.status === "True" && (progressing === undefined || progressing.status === "False")) {
    return { state: "ready", reason: ready.reason, message: ready.message };
  }
  return { state: "waiting", message: progressing?.status === "True" ? progressing.message : ready.message };
}

/** The STATUS column: the Ready condition's reason (`Available`, `ScaledToZero`, `CrashLoop`, …). */
export function statusWord(fn: ClusterFunction): string {
  if (fn.metadata.deletionTimestamp) return "Deleting";
  const r = readiness(fn);
  if (r.state === "waiting") return "Pending";
  return r.reason;
}
