/**
 * What every object a Function owns carries: the function label (the gateway
 * and the HPA select on it) and a controller owner reference (deleting the
 * Function garbage-collects its children).
 */
import { FUNCTION_API_VERSION, FUNCTION_KIND, FUNCTION_LABEL, type FunctionResource } from "@faas/api";
import type { V1ObjectMeta } from "@kubernetes/client-node";

export const MANAGED_BY_LABEL = "app.kubernetes.io/managed-by";
export const MANAGED_BY = "faas-operator";

/** A Function as read from the API server: the spec plus the server's metadata. */
export type FunctionObject = FunctionResource & {
  metadata: FunctionResource["metadata"] & { namespace: string; uid: string; generation?: number };
};

export function functionLabels(fn: FunctionObject): Record<string, string> {
  return { [FUNCTION_LABEL]: fn.metadata.name, [MANAGED_BY_LABEL]: MANAGED_BY };
}

/** `faas.example.com/function=<name>`: pods, endpoints and status.selector. */
export function functionSelector(name: string): string {
  return `${FUNCTION_LABEL}=${name}`;
}

export function childMetadata(fn: FunctionObject, name: string): V1ObjectMeta {
  return {
    name,
    namespace: fn.metadata.namespace,
    labels: functionLabels(fn),
    ownerReferences: [
      {
        apiVersion: FUNCTION_API_VERSION,
        kind: FUNCTION_KIND,
        name: fn.metadata.name,
        uid: fn.metadata.uid,
        controller: true,
        blockOwnerDeletion: true,
      },
    ],
  };
}
