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
  const pool = (env.FAAS_POOL ?? "on").toLowerCase();
  if (!["on", "off", "true", "false", "1", "0"].includes(pool)) {
    throw new FaasError("BAD_REQUEST", `FAAS_POOL=${env.FAAS_POOL}: must be on or off`);
  }
  const specializeTimeoutMs = Number(env.FAAS_POOL_SPECIALIZE_TIMEOUT_MS ?? 15_000);
  if (!Number.isInteger(specializeTimeoutMs) || specializeTimeoutMs <= 0) {
    throw new FaasError(
      "BAD_REQUEST",
      `FAAS_POOL_SPECIALIZE_TIMEOUT_MS=${env.FAAS_POOL_SPECIALIZE_TIMEOUT_MS}: must be a positive integer`,
    );
  }
  const coldApiTimeoutMs = Number(env.FAAS_KUBE_COLD_API_TIMEOUT_MS ?? 5000);
  if (!Number.isInteger(coldApiTimeoutMs) || coldApiTimeoutMs <= 0) {
    throw new FaasError(
      "BAD_REQUEST",
      `FAAS_KUBE_COLD_API_TIMEOUT_MS=${env.FAAS_KUBE_COLD_API_TIMEOUT_MS}: must be a positive integer`,
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
      coldApiTimeoutMs,
      activityTickMs: 250,
      pool: { enabled: ["on", "true", "1"].includes(pool), specializeTimeoutMs, maxAttempts: 3 },
    },
    kubeconfig: env.KUBECONFIG || undefined,
  };
}
