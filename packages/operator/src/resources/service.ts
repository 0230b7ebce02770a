/**
 * Service `fn-<name>`: ClusterIP on the runner port. The gateway routes by the
 * EndpointSlices of this Service, which carry its function label.
 */
import { FUNCTION_LABEL, RUNNER_PORT, serviceName } from "@faas/api";
import type { V1Service } from "@kubernetes/client-node";
import { childMetadata, type FunctionObject } from "./labels.js";

export function buildService(fn: FunctionObject): V1Service {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: childMetadata(fn, serviceName(fn.metadata.name)),
    spec: {
      type: "ClusterIP",
      selector: { [FUNCTION_LABEL]: fn.metadata.name },
      ports: [{ name: "http", port: RUNNER_PORT, targetPort: "http", protocol: "TCP" }],
    },
  };
}
