/**
 * Names of everything derived from a Function: Kubernetes child objects, labels,
 * code files. Nothing else builds these strings.
 */
export const API_GROUP = "faas.example.com";
export const API_VERSION = "v1";
export const FUNCTION_API_VERSION = `${API_GROUP}/${API_VERSION}`;
export const FUNCTION_KIND = "Function";
export const FUNCTION_PLURAL = "functions";
export const FUNCTION_LABEL = `${API_GROUP}/function`;
export const SYSTEM_NAMESPACE = "faas-system";
export const GATEWAY_SERVICE = "faas-gateway";
export const GATEWAY_PORT = 8000;
/** The package registry deployed with the platform (deploy/registry.yaml, ADR 0016). */
export const REGISTRY_SERVICE = "faas-registry";
export const REGISTRY_PORT = 5000;
export const REGISTRY_SELECTOR = "app.kubernetes.io/name=faas-registry";
/** How pods reach it: the name the operator maps to the Service's ClusterIP in pods' /etc/hosts. */
export const REGISTRY_HOST = `${REGISTRY_SERVICE}.${SYSTEM_NAMESPACE}.svc`;
export const REGISTRY_URL = `http://${REGISTRY_HOST}:${REGISTRY_PORT}`;
export const RUNNER_PORT = 8080;

export const deploymentName = (fn: string): string => `fn-${fn}-deploy`;
export const serviceName = (fn: string): string => `fn-${fn}`;
/**
 * The code ConfigMap of one version of a function: named by its code hash, so a
 * pod always mounts the code its template was made for (never a newer version
 * written in place), and immutable.
 */
export const configMapName = (fn: string, codeHash: string): string => `fn-${fn}-code-${codeHash}`;
/** Every code ConfigMap of a function, whatever its version, starts with this. */
export const configMapPrefix = (fn: string): string => `fn-${fn}-code`;
export const hpaName = (fn: string): string => `fn-${fn}`;

export const RUNTIMES = ["python", "nodejs"] as const;
export type Runtime = (typeof RUNTIMES)[number];

const CODE_EXTENSION: Record<Runtime, string> = { python: ".py", nodejs: ".mjs" };

/** `main.handle` → `{ module: "main", exportName: "handle" }`. */
export function splitHandler(handler: string): { module: string; exportName: string } {
  const dot = handler.lastIndexOf(".");
  return { module: handler.slice(0, dot), exportName: handler.slice(dot + 1) };
}

/** The file a function's code is stored in: `main.py`, `index.mjs`, … */
export function codeFileName(runtime: Runtime, handler: string): string {
  return `${splitHandler(handler).module}${CODE_EXTENSION[runtime]}`;
}

export const runnerImage = (runtime: Runtime): string =>
  runtime === "python" ? "faas-python-runner:latest" : "faas-node-runner:latest";

/**
 * Gateways stamp this annotation on a Function (RFC 3339, ms) when requests
 * start, and keep stamping it while any are in flight; the operator scales a
 * `minReplicas: 0` function to zero once it is older than `idleSeconds`.
 */
export const LAST_REQUEST_ANNOTATION = `${API_GROUP}/last-request-at`;
/** Container paths and settings of a function pod. */
export const CODE_MOUNT_PATH = "/code";
export const LOAD_SPEC_FILE = "function.json";
export const OPERATOR_FIELD_MANAGER = "faas-operator";
export const GATEWAY_FIELD_MANAGER = "faas-gateway";

/**
 * The warm pool on Kubernetes (ADR 0008): generic runner pods per runtime and
 * namespace, kept by the operator; a gateway claims one on a cold start by
 * specializing it, then relabels it so the pool's ReplicaSet lets it go.
 */
export const POOL_LABEL = `${API_GROUP}/pool`;
/** `idle` on the pool's pod template (the ReplicaSet selects on it); `claimed` once claimed. */
export const POOL_STATE_LABEL = `${API_GROUP}/pool-state`;
export const POOL_STATE_IDLE = "idle";
export const POOL_STATE_CLAIMED = "claimed";
/** On a claimed pod: the function it serves (not FUNCTION_LABEL, so Services, HPAs and Deployments ignore it). */
export const CLAIMED_FOR_LABEL = `${API_GROUP}/claimed-for`;
/** On function pod templates and claimed pods: the code hash the runner loaded. */
export const CODE_HASH_ANNOTATION = `${API_GROUP}/code-hash`;
/** On a claimed pod: when it was claimed (RFC 3339). */
export const CLAIMED_AT_ANNOTATION = `${API_GROUP}/claimed-at`;
/**
 * On a pool pod a gateway gave up on mid-claim (no answer to `/specialize` in
 * time, or an error): taken out of the pool like a claim, never routed to, and
 * retired by the operator — its runner may be stuck in the code it was loading.
 */
export const CLAIM_FAILED_ANNOTATION = `${API_GROUP}/claim-failed`;
/** Secret (key `token`) a pool pod's runner wants on `POST /specialize`; only gateways read it. */
export const POOL_TOKEN_SECRET = "faas-pool-token";
export const POOL_TOKEN_KEY = "token";
/** emptyDir path of a pool pod's claim file: it survives a container restart (runner-protocol.md). */
export const POOL_STATE_DIR = "/var/run/faas";
export const POOL_CLAIM_FILE = `${POOL_STATE_DIR}/claimed`;
export const poolDeploymentName = (runtime: Runtime): string => `faas-pool-${runtime}`;

/**
 * API keys on Kubernetes (ADR 0011): one Secret per namespace, one data entry
 * per key (`<id>` → the JSON of its record, hash only). Gateways may read this
 * Secret and no other but the pool token.
 */
export const API_KEYS_SECRET = "faas-api-keys";
export const API_KEYS_LABEL = `${API_GROUP}/keys`;
