/**
 * Gateway configuration, read once from the environment in a binary's main and
 * passed down. Nothing else reads `process.env`.
 */
import { FaasError, GATEWAY_PORT } from "@faas/api";

export interface GatewayConfig {
  /** Address to listen on. Local mode keeps it on loopback. */
  host: string;
  port: number;
  /** Largest request body accepted; more → 413. */
  maxBodyBytes: number;
  /** Parked requests per function before 503 FUNCTION_BUSY. */
  maxParkedPerFunction: number;
  /** Parked requests across all functions before 503 GATEWAY_OVERLOADED. */
  maxParkedTotal: number;
  /**
   * Parked requests across the functions of one namespace before 503
   * GATEWAY_OVERLOADED for that namespace only, so one namespace's burst
   * cannot take the whole gateway's parking.
   */
  maxParkedPerNamespace: number;
  /** Longest a request waits for a replica before 504 (a client may ask for less). */
  parkTimeoutMs: number;
  /**
   * Serve `/metrics` on this port only (same host), not on `port`: in a
   * cluster, scrapers reach it, clients of the Service do not. 0: on `port`.
   */
  metricsPort: number;
  /** A client must send all request headers within this (slowloris guard). */
  headersTimeoutMs: number;
  /** A client must send the whole request within this. */
  requestTimeoutMs: number;
  /** Idle keep-alive connections from clients are closed after this. */
  keepAliveTimeoutMs: number;
  /** Idle pooled connections to runners; below the runners' own keep-alive timeout. */
  upstreamKeepAliveMs: number;
  /** On SIGTERM, how long in-flight and parked requests get to finish. */
  shutdownGraceMs: number;
  /** Bearer token for /admin; admin is off when unset. */
  adminToken: string | undefined;
  logLevel: string;
}

export const DEFAULT_GATEWAY_CONFIG: GatewayConfig = {
  host: "127.0.0.1",
  port: GATEWAY_PORT,
  maxBodyBytes: 6 * 1024 * 1024,
  maxParkedPerFunction: 2000,
  maxParkedTotal: 10000,
  // One namespace (local mode, a single-namespace gateway): no bound beyond the total.
  maxParkedPerNamespace: 10000,
  metricsPort: 0,
  parkTimeoutMs: 30_000,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 300_000,
  keepAliveTimeoutMs: 5_000,
  upstreamKeepAliveMs: 30_000,
  shutdownGraceMs: 30_000,
  adminToken: undefined,
  logLevel: "info",
};

function int(env: NodeJS.ProcessEnv, key: string, fallback: number, min = 0): number {
  const raw = env[key];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) {
    throw new FaasError("BAD_REQUEST", `${key}=${raw}: must be an integer >= ${min}`);
  }
  return n;
}

export function loadGatewayConfig(env: NodeJS.ProcessEnv, base: GatewayConfig = DEFAULT_GATEWAY_CONFIG): GatewayConfig {
  return {
    host: env.FAAS_GATEWAY_HOST || base.host,
    port: int(env, "FAAS_GATEWAY_PORT", base.port),
    maxBodyBytes: int(env, "FAAS_MAX_BODY_BYTES", base.maxBodyBytes, 1),
    maxParkedPerFunction: int(env, "FAAS_MAX_PARKED_PER_FUNCTION", base.maxParkedPerFunction, 1),
    maxParkedTotal: int(env, "FAAS_MAX_PARKED_TOTAL", base.maxParkedTotal, 1),
    maxParkedPerNamespace: int(env, "FAAS_MAX_PARKED_PER_NAMESPACE", base.maxParkedPerNamespace, 1),
    parkTimeoutMs: int(env, "FAAS_PARK_TIMEOUT_MS", base.parkTimeoutMs, 1),
    metricsPort: int(env, "FAAS_METRICS_PORT", base.metricsPort),
    headersTimeoutMs: int(env, "FAAS_HEADERS_TIMEOUT_MS", base.headersTimeoutMs, 1),
    requestTimeoutMs: int(env, "FAAS_REQUEST_TIMEOUT_MS", base.requestTimeoutMs, 1),
    keepAliveTimeoutMs: int(env, "FAAS_KEEPALIVE_TIMEOUT_MS", base.keepAliveTimeoutMs, 1),
    upstreamKeepAliveMs: int(env, "FAAS_UPSTREAM_KEEPALIVE_MS", base.upstreamKeepAliveMs, 1),
    shutdownGraceMs: int(env, "FAAS_SHUTDOWN_GRACE_MS", base.shutdownGraceMs, 0),
    adminToken: env.FAAS_ADMIN_TOKEN || base.adminToken,
    logLevel: env.FAAS_LOG_LEVEL || base.logLevel,
  };
}
