/**
 * CLI configuration, read once from the environment in `main.ts` and passed
 * down. This is the only place in the CLI that reads `process.env`.
 */
import { homedir } from "node:os";
import { join } from "node:path";
import { FaasError } from "@faas/api";
import { type GatewayConfig, loadGatewayConfig } from "@faas/gateway";

export interface CliConfig {
  /** Where `faas up` keeps functions, logs and `gateway.json` (FAAS_DATA_DIR, default ~/.faas). */
  dataDir: string;
  /** Talk to this gateway instead of the one recorded in the data dir (FAAS_GATEWAY). */
  gatewayUrl: string | undefined;
  /** Admin token for a gateway not started by this data dir's `faas up` (FAAS_ADMIN_TOKEN). */
  adminToken: string | undefined;
  /** NO_COLOR set: never colour. FORCE_COLOR set: colour even without a TTY. */
  color: "auto" | "never" | "always";
  /** Interpreter for Python runners (FAAS_PYTHON, default python3). */
  python: string;
  /** Builds of packaged functions: npm (FAAS_NPM, default npm from PATH). */
  npm: string;
  /**
   * Registry for packages deployed to a cluster (FAAS_REGISTRY or --registry):
   * reachable from here and from the pods at this URL. Default: the platform's
   * own registry, pushed to through a port-forward.
   */
  registry: string | undefined;
  /** Architecture of the cluster's nodes for package builds (FAAS_CLUSTER_ARCH: amd64 | arm64; default this machine's). */
  clusterArch: string | undefined;
  /** Interpreter for Node.js runners: the one running the CLI. */
  node: string;
  /**
   * The only variables runners inherit from the CLI's environment: enough to
   * run, never the caller's tokens or credentials.
   */
  runnerBaseEnv: Record<string, string>;
  /**
   * A runner start, trial load or specialization that takes longer fails and its
   * runner is killed (FAAS_LOAD_TIMEOUT_MS, default 10 s).
   */
  loadTimeoutMs: number;
  /**
   * Work on a Kubernetes cluster instead of the local platform: a kubeconfig
   * context (FAAS_CONTEXT), a kubeconfig file (FAAS_KUBECONFIG; otherwise
   * $KUBECONFIG or ~/.kube/config), a namespace (FAAS_NAMESPACE; otherwise the
   * context's, or `default`). Flags win; see cluster-context.ts.
   */
  cluster: { context: string | undefined; kubeconfig: string | undefined; namespace: string | undefined };
  /** Gateway settings for `faas up` (FAAS_GATEWAY_PORT, FAAS_LOG_LEVEL, …). */
  gateway: GatewayConfig;
  /** Operator settings for `faas operator` (FAAS_* read by the operator's own loadConfig). */
  operatorEnv: Readonly<Record<string, string | undefined>>;
}

/** Variables passed through to runner processes, when set. */
export const RUNNER_ENV_ALLOWLIST = ["PATH", "HOME", "LANG", "TZ"] as const;

export function loadCliConfig(env: NodeJS.ProcessEnv): CliConfig {
  const home = env.HOME || homedir();
  const runnerBaseEnv: Record<string, string> = {};
  for (const key of RUNNER_ENV_ALLOWLIST) {
    const value = env[key];
    if (value) runnerBaseEnv[key] = value;
  }
  runnerBaseEnv.PATH ??= "/usr/local/bin:/usr/bin:/bin";
  return {
    dataDir: env.FAAS_DATA_DIR || join(home, ".faas"),
    gatewayUrl: env.FAAS_GATEWAY || undefined,
    adminToken: env.FAAS_ADMIN_TOKEN || undefined,
    color: env.NO_COLOR ? "never" : env.FORCE_COLOR && env.FORCE_COLOR !== "0" ? "always" : "auto",
    python: env.FAAS_PYTHON || "python3",
    npm: env.FAAS_NPM || "npm",
    registry: env.FAAS_REGISTRY || undefined,
    clusterArch: clusterArch(env.FAAS_CLUSTER_ARCH),
    node: process.execPath,
    runnerBaseEnv,
    loadTimeoutMs: positiveInt(env, "FAAS_LOAD_TIMEOUT_MS", 10_000),
    cluster: {
      context: env.FAAS_CONTEXT || undefined,
      kubeconfig: env.FAAS_KUBECONFIG || undefined,
      namespace: env.FAAS_NAMESPACE || undefined,
    },
    gateway: loadGatewayConfig(env),
    operatorEnv: Object.fromEntries(
      Object.entries(env).filter(([k]) => k.startsWith("FAAS_") || k === "KUBECONFIG" || k === "POD_NAMESPACE"),
    ),
  };
}

function clusterArch(value: string | undefined): string | undefined {
  if (value === undefined || value === "") return undefined;
  if (value !== "amd64" && value !== "arm64") {
    throw new FaasError("INVALID_SPEC", `FAAS_CLUSTER_ARCH=${value}: must be amd64 or arm64`);
  }
  return value;
}

function positiveInt(env: NodeJS.ProcessEnv, key: string, fallback: number): number {
  const raw = env[key];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) {
    throw new FaasError("BAD_REQUEST", `${key}=${raw}: must be an integer >= 1 (milliseconds)`);
  }
  return value;
}
