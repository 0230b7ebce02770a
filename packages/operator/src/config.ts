/**
 * Operator configuration: read once in main (environment, then command-line
 * flags, which win) and passed down. Nothing else reads `process.env`.
 */
import { hostname } from "node:os";
import {
  FaasError,
  GATEWAY_PORT,
  GATEWAY_SERVICE,
  RUNTIMES,
  type Runtime,
  runnerImage,
  SYSTEM_NAMESPACE,
} from "@faas/api";

export interface ResourceAmounts {
  cpu: string;
  memory: string;
}

export interface OperatorConfig {
  /** Namespace whose Functions are reconciled; undefined = all namespaces. */
  namespace: string | undefined;
  /** Kubeconfig file; undefined = in-cluster service account, $KUBECONFIG or ~/.kube/config. */
  kubeconfig: string | undefined;
  /** Campaign for a Lease before reconciling (needed when more than one operator runs). */
  leaderElection: boolean;
  leaseName: string;
  leaseNamespace: string;
  /** This process's name in the Lease: the pod name in a cluster. */
  identity: string;
  /** status.url of a Function; `{name}` and `{namespace}` are substituted. */
  gatewayUrlTemplate: string;
  /** Runner image per runtime. */
  images: Record<Runtime, string>;
  imagePullPolicy: "Always" | "IfNotPresent" | "Never";
  /** Container resources of function pods (the HPA's CPU target is relative to the request). */
  requests: ResourceAmounts;
  limits: ResourceAmounts;
  /** Generic runner pods kept warm per runtime in each namespace served (ADR 0008); 0 = no pool. */
  poolSize: Record<Runtime, number>;
  /** Requests of a pool pod (small: most of the time it waits); its limits are `limits`. */
  poolRequests: ResourceAmounts;
  /** The pool's objects are applied again this often (and when leadership starts). */
  poolResyncSeconds: number;
  /**
   * Keep NetworkPolicies in every namespace served that let only the gateway's
   * pods (and the node) reach function and pool pods; false removes ours.
   */
  networkPolicy: boolean;
  /** Where the gateway's pods run (the policies' namespaceSelector). */
  gatewayNamespace: string;
  /**
   * The gateways' announce port (ADR 0018): function pods POST their address to
   * `faas-gateway.<gatewayNamespace>.svc:<port>` once ready; 0 = they do not.
   */
  announcePort: number;
  /** A claimed pod goes once the function's Deployment has had a ready pod this long. */
  poolHandoffMs: number;
  /** A claimed pod goes when its function's Deployment is still at zero this long after the claim. */
  poolOrphanMs: number;
  /** preStop sleep: endpoints are removed before the runner gets SIGTERM. */
  preStopSleepSeconds: number;
  /** HPA scale-down stabilization window; undefined = the Kubernetes default (300 s). */
  hpaScaleDownStabilizationSeconds: number | undefined;
  /** Reconciles running at once (never two for one Function). */
  workers: number;
  /** Every Function is reconciled again this often, even without events. */
  resyncSeconds: number;
  /** How often idle minReplicas-0 functions are checked for scale-to-zero. */
  idleCheckIntervalMs: number;
  /** Retry delays after temporary errors: base doubling per failure, up to the cap. */
  retryBaseMs: number;
  retryMaxMs: number;
  /** Port for /healthz and /readyz; 0 = none. */
  healthPort: number;
  logLevel: string;
}

export const DEFAULT_OPERATOR_CONFIG: OperatorConfig = {
  namespace: undefined,
  kubeconfig: undefined,
  leaderElection: false,
  leaseName: "faas-operator",
  leaseNamespace: SYSTEM_NAMESPACE,
  identity: `${hostname()}-${process.pid}`,
  gatewayUrlTemplate: `http://${GATEWAY_SERVICE}.${SYSTEM_NAMESPACE}:${GATEWAY_PORT}/invoke/{name}`,
  images: Object.fromEntries(RUNTIMES.map((r) => [r, runnerImage(r)])) as Record<Runtime, string>,
  imagePullPolicy: "IfNotPresent",
  requests: { cpu: "100m", memory: "64Mi" },
  limits: { cpu: "1", memory: "256Mi" },
  poolSize: { python: 2, nodejs: 2 },
  // As much CPU weight as a function pod: a claimed pod serves a cold start under contention.
  poolRequests: { cpu: "100m", memory: "64Mi" },
  poolResyncSeconds: 60,
  networkPolicy: true,
  gatewayNamespace: SYSTEM_NAMESPACE,
  announcePort: 8001,
  poolHandoffMs: 2_000,
  poolOrphanMs: 30_000,
  preStopSleepSeconds: 3,
  hpaScaleDownStabilizationSeconds: undefined,
  workers: 4,
  resyncSeconds: 300,
  idleCheckIntervalMs: 1_000,
  retryBaseMs: 500,
  retryMaxMs: 60_000,
  healthPort: 0,
  logLevel: "info",
};

function bad(key: string, raw: string, want: string): FaasError {
  return new FaasError("BAD_REQUEST", `${key}=${raw}: ${want}`);
}

function int(key: string, raw: string | undefined, fallback: number, min = 0): number {
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw bad(key, raw, `must be an integer >= ${min}`);
  return n;
}

function bool(key: string, raw: string | undefined, fallback: boolean): boolean {
  if (raw === undefined || raw === "") return fallback;
  if (/^(1|true|yes|on)$/i.test(raw)) return true;
  if (/^(0|false|no|off)$/i.test(raw)) return false;
  throw bad(key, raw, "must be true or false");
}

/** `--flag value`, `--flag=value` and bare `--flag` (→ "true") from argv. */
export function parseFlags(argv: readonly string[]): Record<string, string> {
  const flags: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    const m = /^--?([a-z][a-z-]*)(?:=(.*))?$/.exec(arg);
    if (!m?.[1]) throw new FaasError("BAD_REQUEST", `unexpected argument ${arg}`);
    const name = m[1] === "n" ? "namespace" : m[1] === "A" ? "all-namespaces" : m[1];
    const next = argv[i + 1];
    if (m[2] !== undefined) flags[name] = m[2];
    else if (next !== undefined && !next.startsWith("-")) {
      flags[name] = next;
      i++;
    } else flags[name] = "true";
  }
  return flags;
}

const FLAGS = [
  "namespace",
  "all-namespaces",
  "kubeconfig",
  "leader-elect",
  "lease-name",
  "lease-namespace",
  "log-level",
  "health-port",
  "pool-size",
  "network-policy",
];

/**
 * Flags (`--namespace X`, `--all-namespaces`, `--kubeconfig F`, `--leader-elect`,
 * `--lease-name`, `--lease-namespace`, `--log-level`, `--health-port`, `--pool-size`,
 * `--network-policy`) override the environment (`FAAS_*`).
 */
export function loadConfig(env: NodeJS.ProcessEnv, argv: readonly string[] = []): OperatorConfig {
  const d = DEFAULT_OPERATOR_CONFIG;
  const f = parseFlags(argv);
  for (const k of Object.keys(f)) if (!FLAGS.includes(k)) throw new FaasError("BAD_REQUEST", `unknown flag --${k}`);
  const allNamespaces = bool("--all-namespaces", f["all-namespaces"], false);
  const namespace = allNamespaces ? undefined : f.namespace || env.FAAS_WATCH_NAMESPACE || d.namespace;
  const pullPolicy = env.FAAS_IMAGE_PULL_POLICY || d.imagePullPolicy;
  if (pullPolicy !== "Always" && pullPolicy !== "IfNotPresent" && pullPolicy !== "Never") {
    throw bad("FAAS_IMAGE_PULL_POLICY", pullPolicy, "must be Always, IfNotPresent or Never");
  }
  const stabilization = env.FAAS_HPA_SCALE_DOWN_STABILIZATION_SECONDS;
  const retryBaseMs = int("FAAS_RETRY_BASE_MS", env.FAAS_RETRY_BASE_MS, d.retryBaseMs, 1);
  // FAAS_POOL_SIZE (or --pool-size) for every runtime; FAAS_POOL_SIZE_<RUNTIME> for one.
  const poolSize = int("FAAS_POOL_SIZE", f["pool-size"] ?? env.FAAS_POOL_SIZE, d.poolSize.python);
  return {
    namespace,
    kubeconfig: f.kubeconfig || env.FAAS_KUBECONFIG || d.kubeconfig,
    leaderElection: bool("--leader-elect", f["leader-elect"] ?? env.FAAS_LEADER_ELECT, d.leaderElection),
    leaseName: f["lease-name"] || env.FAAS_LEASE_NAME || d.leaseName,
    leaseNamespace: f["lease-namespace"] || env.FAAS_LEASE_NAMESPACE || env.POD_NAMESPACE || d.leaseNamespace,
    identity: env.POD_NAME || d.identity,
    gatewayUrlTemplate: env.FAAS_GATEWAY_URL_TEMPLATE || d.gatewayUrlTemplate,
    images: {
      python: env.FAAS_PYTHON_RUNNER_IMAGE || d.images.python,
      nodejs: env.FAAS_NODE_RUNNER_IMAGE || d.images.nodejs,
    },
    imagePullPolicy: pullPolicy,
    requests: {
      cpu: env.FAAS_FUNCTION_CPU_REQUEST || d.requests.cpu,
      memory: env.FAAS_FUNCTION_MEMORY_REQUEST || d.requests.memory,
    },
    limits: {
      cpu: env.FAAS_FUNCTION_CPU_LIMIT || d.limits.cpu,
      memory: env.FAAS_FUNCTION_MEMORY_LIMIT || d.limits.memory,
    },
    poolSize: {
      python: int("FAAS_POOL_SIZE_PYTHON", env.FAAS_POOL_SIZE_PYTHON, poolSize),
      nodejs: int("FAAS_POOL_SIZE_NODEJS", env.FAAS_POOL_SIZE_NODEJS, poolSize),
    },
    poolRequests: {
      cpu: env.FAAS_POOL_CPU_REQUEST || d.poolRequests.cpu,
      memory: env.FAAS_POOL_MEMORY_REQUEST || d.poolRequests.memory,
    },
    poolResyncSeconds: int("FAAS_POOL_RESYNC_SECONDS", env.FAAS_POOL_RESYNC_SECONDS, d.poolResyncSeconds, 1),
    networkPolicy: bool("--network-policy", f["network-policy"] ?? env.FAAS_NETWORK_POLICY, d.networkPolicy),
    gatewayNamespace: env.FAAS_GATEWAY_NAMESPACE || d.gatewayNamespace,
    announcePort: int("FAAS_ANNOUNCE_PORT", env.FAAS_ANNOUNCE_PORT, d.announcePort),
    poolHandoffMs: int("FAAS_POOL_HANDOFF_MS", env.FAAS_POOL_HANDOFF_MS, d.poolHandoffMs),
    poolOrphanMs: int("FAAS_POOL_ORPHAN_MS", env.FAAS_POOL_ORPHAN_MS, d.poolOrphanMs, 1),
    preStopSleepSeconds: int("FAAS_PRESTOP_SLEEP_SECONDS", env.FAAS_PRESTOP_SLEEP_SECONDS, d.preStopSleepSeconds),
    hpaScaleDownStabilizationSeconds:
      stabilization === undefined || stabilization === ""
        ? d.hpaScaleDownStabilizationSeconds
        : int("FAAS_HPA_SCALE_DOWN_STABILIZATION_SECONDS", stabilization, 0),
    workers: int("FAAS_OPERATOR_WORKERS", env.FAAS_OPERATOR_WORKERS, d.workers, 1),
    resyncSeconds: int("FAAS_RESYNC_SECONDS", env.FAAS_RESYNC_SECONDS, d.resyncSeconds, 1),
    idleCheckIntervalMs: int("FAAS_IDLE_CHECK_INTERVAL_MS", env.FAAS_IDLE_CHECK_INTERVAL_MS, d.idleCheckIntervalMs, 10),
    retryBaseMs,
    retryMaxMs: int("FAAS_RETRY_MAX_MS", env.FAAS_RETRY_MAX_MS, d.retryMaxMs, retryBaseMs),
    healthPort: int("--health-port", f["health-port"] ?? env.FAAS_HEALTH_PORT, d.healthPort),
    logLevel: f["log-level"] || env.FAAS_LOG_LEVEL || d.logLevel,
  };
}

/** status.url for a Function. */
export function functionUrl(cfg: Pick<OperatorConfig, "gatewayUrlTemplate">, namespace: string, name: string): string {
  return cfg.gatewayUrlTemplate.replaceAll("{name}", name).replaceAll("{namespace}", namespace);
}
