/** The shapes of the objects the operator reads back from the API server. */
import type { KubeObject } from "@faas/kube";
import type { V1Deployment, V1Pod } from "@kubernetes/client-node";

export interface Condition {
  type: string;
  status: "True" | "False" | "Unknown";
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}

export interface FunctionStatus {
  observedGeneration?: number;
  replicas?: number;
  readyReplicas?: number;
  selector?: string;
  url?: string;
  codeHash?: string;
  conditions?: Condition[];
}

/** A Function as it comes from the cache: the spec unparsed, the status ours. */
export interface RawFunction extends KubeObject {
  spec?: Record<string, unknown>;
  status?: FunctionStatus;
}

export type DeploymentObject = KubeObject & Pick<V1Deployment, "spec" | "status">;
export type PodObject = KubeObject & Pick<V1Pod, "spec" | "status">;
