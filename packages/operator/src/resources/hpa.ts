/**
 * HPA `fn-<name>` on CPU, only for functions that may run more than one
 * replica. It owns 1..max; at 0 replicas (scaled to zero) it pauses, and the
 * gateway brings the Deployment back to 1.
 */
import { deploymentName, type FunctionSpec, hpaName } from "@faas/api";
import type { V2HorizontalPodAutoscaler } from "@kubernetes/client-node";
import type { OperatorConfig } from "../config.js";
import { childMetadata, type FunctionObject } from "./labels.js";

export function wantsHpa(spec: Pick<FunctionSpec, "minReplicas" | "maxReplicas">): boolean {
  return spec.maxReplicas > Math.max(1, spec.minReplicas);
}

export function buildHpa(
  fn: FunctionObject,
  cfg: Pick<OperatorConfig, "hpaScaleDownStabilizationSeconds">,
): V2HorizontalPodAutoscaler {
  const hpa: V2HorizontalPodAutoscaler = {
    apiVersion: "autoscaling/v2",
    kind: "HorizontalPodAutoscaler",
    metadata: childMetadata(fn, hpaName(fn.metadata.name)),
    spec: {
      scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: deploymentName(fn.metadata.name) },
      minReplicas: Math.max(1, fn.spec.minReplicas),
      maxReplicas: fn.spec.maxReplicas,
      metrics: [
        {
          type: "Resource",
          resource: { name: "cpu", target: { type: "Utilization", averageUtilization: fn.spec.targetCPUUtilization } },
        },
      ],
    },
  };
  if (cfg.hpaScaleDownStabilizationSeconds !== undefined && hpa.spec) {
    hpa.spec.behavior = { scaleDown: { stabilizationWindowSeconds: cfg.hpaScaleDownStabilizationSeconds } };
  }
  return hpa;
}
