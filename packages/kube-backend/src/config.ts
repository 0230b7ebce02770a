/** Configuration of the in-cluster gateway, read once from the environment. */
import { FaasError } from "@faas/api";
import { DEFAULT_GATEWAY_CONFIG, type GatewayConfig, loadGatewayConfig } from "@faas/gateway";
import type { KubeBackendConfig } from "./kube-backend.js";

export interface KubeGatewayConfig {
  gateway: GatewayConfig;
  backend: KubeBackendConfig;
  /** Path of a kubeconfig; unset in a pod (service account). */
  kubeconfig: string | undefined;
  /**
   * Namespaces whose Functions this gateway serves (`FAAS_FUNCTION_NAMESPACES`,
   * comma-separated; or the single `FAAS_FUNCTION_NAMESPACE`); the first is the
   * default one, whose functions `/invoke/<name>` means.
   */
  namespaces: string[];
  /**
   * `FAAS_FUNCTION_NAMESPACES=*`: every namespace with a Function (needs the
   * ClusterRole bound cluster-wide); the default namespace is then
   * `FAAS_FUNCTION_NAMESPACE`, or `default`.
   */
  allNamespaces: boolean;
  /** Where function pods announce that they are ready (ADR 0018). */
  announce: {
    /** FAAS_ANNOUNCE_PORT (default 8001); 0 turns the announce port off. */
    port: number;
    /** FAAS_GATEWAY_SERVICE: this gateway's Service, whose other endpoints get announcements passed on. */
    service: string;
    /** FAAS_POD_NAMESPACE: the namespace this gateway runs in (default faas-system). */
    namespace: string;
    /** FAAS_POD_IP: this gateway pod's own address (not passed to itself). */
    selfIp: string | undefined;
  };
}

const NAMESPACE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function loadNamespaces(env: NodeJS.ProcessEnv): { namespaces: string[]; all: boolean } {
  if (env.FAAS_FUNCTION_NAMESPACES?.trim() === "*") {
    return { namespaces: checkNamespaces(env.FAAS_FUNCTION_NAMESPACE || "default"), all: true };
  }
  return {
    namespaces: checkNamespaces(env.FAAS_FUNCTION_NAMESPACES ?? env.FAAS_FUNCTION_NAMESPACE ?? "default"),
    all: false,
  };
}

function checkNamespaces(raw: string): string[] {
  const list = raw
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (list.length === 0) list.push("default");
  for (const ns of list) {
    if (ns.length > 63 || !NAMESPACE.test(ns)) {
      throw new FaasError(
        "BAD_REQUEST",
        `FAAS_FUNCTION_NAMESPACES: ${JSON.stringify(ns)} is not a namespace name (lowercase letters, digits and '-', at most 63)`,
      );
    }
  }
  if (new Set(list).size !== list.length) {
    throw new FaasError("BAD_REQUEST", `FAAS_FUNCTION_NAMESPACES=${raw}: a namespace is listed twice`);
  }
  return list;
}

export function loadKubeGatewayConfig(env: NodeJS.ProcessEnv): KubeGatewayConfig {
  const { namespaces, all: allNamespaces } = loadNamespaces(env);
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
  const gateway = loadGatewayConfig(env, { ...DEFAULT_GATEWAY_CONFIG, host: "0.0.0.0", parkTimeoutMs: 60_000 });
  // Several namespaces: each may fill its share of the (parsed) total parking, not all of it;
  // all namespaces, however many: half each. An explicit FAAS_MAX_PARKED_PER_NAMESPACE wins.
  if (env.FAAS_MAX_PARKED_PER_NAMESPACE === undefined && (allNamespaces || namespaces.length > 1)) {
    gateway.maxParkedPerNamespace = Math.max(
      1,
      Math.floor(gateway.maxParkedTotal / (allNamespaces ? 2 : namespaces.length)),
    );
  }
  const announcePort = Number(env.FAAS_ANNOUNCE_PORT ?? 8001);
  if (!Number.isInteger(announcePort) || announcePort < 0 || announcePort > 65535) {
    throw new FaasError("BAD_REQUEST", `FAAS_ANNOUNCE_PORT=${env.FAAS_ANNOUNCE_PORT}: must be a port (0 turns it off)`);
  }
  if (announcePort !== 0 && announcePort === gateway.port) {
    throw new FaasError("BAD_REQUEST", `FAAS_ANNOUNCE_PORT=${announcePort}: must differ from FAAS_GATEWAY_PORT`);
  }
  return {
    announce: {
      port: announcePort,
      service: env.FAAS_GATEWAY_SERVICE || "faas-gateway",
      namespace: env.FAAS_POD_NAMESPACE || "faas-system",
      selfIp: env.FAAS_POD_IP || undefined,
    },
    // In a pod the gateway listens on all interfaces; admin stays off (manage with kubectl).
    gateway: { ...gateway, adminToken: undefined },
    backend: {
      namespace: namespaces[0] as string,
      scaleUpTimeoutMs,
      coldApiTimeoutMs,
      activityTickMs: 250,
      pool: { enabled: ["on", "true", "1"].includes(pool), specializeTimeoutMs, maxAttempts: 3 },
    },
    kubeconfig: env.KUBECONFIG || undefined,
    namespaces,
    allNamespaces,
  };
}
