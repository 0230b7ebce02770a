/** Configuration of the in-cluster gateway, read once from the environment. */
import { FaasError } from "@faas/api";
import { DEFAULT_GATEWAY_CONFIG, type GatewayConfig, loadGatewayConfig } from "@faas/gateway";
import type { KubeBackendConfig } from "./kube-backend.js";

export interface KubeGatewayConfig {
  gateway: GatewayConfig;
  backend: KubeBackendConfig;
  /** Path of a kubeconfig; unset in a pod (service account). */
  kubeconfig: string | undefined;
}

export function loadKubeGatewayConfig(env: NodeJS.ProcessEnv): KubeGatewayConfig {
  const scaleUpTimeoutMs = Number(env.FAAS_SCALE_UP_TIMEOUT_MS ?? 120_000);
  if (!Number.isInteger(scaleUpTimeoutMs) || scaleUpTimeoutMs <= 0) {
    throw new FaasError(
      "BAD_REQUEST",
      `FAAS_SCALE_UP_TIMEOUT_MS=${env.FAAS_SCALE_UP_TIMEOUT_MS}: must be a positive integer`,
    );
  }
  return {
    // In a pod the gateway listens on all interfaces; admin stays off (manage with kubectl).
    gateway: {
      ...loadGatewayConfig(env, { ...DEFAULT_GATEWAY_CONFIG, host: "0.0.0.0", parkTimeoutMs: 60_000 }),
      adminToken: undefined,
    },
    backend: {
      namespace: env.FAAS_FUNCTION_NAMESPACE || "default",
      scaleUpTimeoutMs,
      activityTickMs: 250,
    },
    kubeconfig: env.KUBECONFIG || undefined,
  };
}
