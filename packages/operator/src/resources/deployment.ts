/**
 * Deployment `fn-<name>-deploy`: the runner image of the function's runtime,
 * loading its code at start from its environment (FAAS_FUNCTION_SPEC, when it
 * fits: no volume, ADR 0018) or from the code ConfigMap mounted at /code. Locked down (non-root,
 * read-only root filesystem, no capabilities, no API token); rolls out on a
 * code change through the code hash on the pod template; never drops a request
 * when a pod goes (readiness gate, surge-only rollouts, preStop sleep so
 * endpoints go before SIGTERM, a grace period longer than the function timeout).
 *
 * Values from Secrets and ConfigMaps reach the container through the kubelet
 * (`valueFrom`, `envFrom`, secret volumes), never through the code ConfigMap;
 * the config hash of what the function refers to rolls the pods when it changes.
 *
 * `spec.replicas` is deliberately absent: the gateway and the HPA own it.
 */
import {
  CODE_HASH_ANNOTATION,
  CODE_MOUNT_PATH,
  codeHash,
  configMapName,
  deploymentName,
  FUNCTION_LABEL,
  type FunctionSpec,
  parseQuantity,
  quantityString,
  RUNNER_PORT,
  toLoadSpec,
} from "@faas/api";
import type {
  V1Container,
  V1Deployment,
  V1EnvVar,
  V1HostAlias,
  V1Volume,
  V1VolumeMount,
} from "@kubernetes/client-node";
import type { OperatorConfig } from "../config.js";
import { childMetadata, type FunctionObject, functionLabels } from "./labels.js";

export { CODE_HASH_ANNOTATION };
/** On a pod template: digest of the Secrets and ConfigMaps the function refers to. */
export const CONFIG_HASH_ANNOTATION = "faas.example.com/config-hash";
export const RUNNER_CONTAINER = "runner";
export const RUNNER_UID = 10001;

export type DeploymentConfig = Pick<
  OperatorConfig,
  "images" | "imagePullPolicy" | "requests" | "limits" | "preStopSleepSeconds"
>;

export function functionCodeHash(fn: FunctionObject): string {
  return codeHash(toLoadSpec(fn));
}

/** The grace period covers the preStop sleep, then the longest call the runner drains. */
export function terminationGraceSeconds(fn: FunctionObject, cfg: Pick<OperatorConfig, "preStopSleepSeconds">): number {
  return cfg.preStopSleepSeconds + fn.spec.timeoutSeconds + 5;
}

/** What every runner container has, function pod or pool pod: port, probes, drain, lock-down. */
export function runnerContainerBase(readinessFailures: number, cfg: Pick<OperatorConfig, "preStopSleepSeconds">) {
  return {
    ports: [{ name: "http", containerPort: RUNNER_PORT, protocol: "TCP" }],
    readinessProbe: {
      httpGet: { path: "/readyz", port: "http" },
      periodSeconds: 1,
      timeoutSeconds: 1,
      failureThreshold: readinessFailures,
    },
    livenessProbe: {
      httpGet: { path: "/healthz", port: "http" },
      periodSeconds: 10,
      timeoutSeconds: 2,
      failureThreshold: 3,
    },
    lifecycle: { preStop: { sleep: { seconds: cfg.preStopSleepSeconds } } },
    // A runner that cannot load its code (or pull its package) says why in /dev/termination-log.
    terminationMessagePolicy: "FallbackToLogsOnError",
    securityContext: {
      runAsNonRoot: true,
      runAsUser: RUNNER_UID,
      readOnlyRootFilesystem: true as boolean,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
      seccompProfile: { type: "RuntimeDefault" },
    },
  } satisfies Partial<V1Container>;
}

/** The function's own requests and limits over the operator's defaults; a request never ends above its limit. */
export function containerResources(
  spec: FunctionSpec,
  cfg: Pick<OperatorConfig, "requests" | "limits">,
): { requests: Record<string, string>; limits: Record<string, string> } {
  const own = spec.resources ?? {};
  const requests: Record<string, string> = { ...cfg.requests };
  const limits: Record<string, string> = { ...cfg.limits };
  for (const kind of ["cpu", "memory"] as const) {
    const ownRequest = own.requests?.[kind];
    const ownLimit = own.limits?.[kind];
    if (ownRequest !== undefined) requests[kind] = quantityString(ownRequest);
    if (ownLimit !== undefined) limits[kind] = quantityString(ownLimit);
    const request = requests[kind] ?? "0";
    const limit = limits[kind] ?? request;
    if ((parseQuantity(request) ?? 0) <= (parseQuantity(limit) ?? Infinity)) continue;
    // A default on one side is adjusted to the function's own value on the other.
    if (ownLimit !== undefined) requests[kind] = limit;
    else limits[kind] = request;
  }
  return { requests, limits };
}

/** Env entries the kubelet resolves; literal values travel in the load spec. */
function referencedEnv(spec: FunctionSpec): V1EnvVar[] {
  return spec.env.filter((e) => e.valueFrom !== undefined).map((e) => ({ name: e.name, valueFrom: e.valueFrom }));
}

const secretVolumeName = (i: number): string => `secret-${i}`;

function secretVolumes(spec: FunctionSpec): { volumes: V1Volume[]; mounts: V1VolumeMount[] } {
  const list = spec.secrets ?? [];
  return {
    // Readable by the runner's group (fsGroup) only.
    volumes: list.map((m, i) => ({ name: secretVolumeName(i), secret: { secretName: m.name, defaultMode: 0o440 } })),
    mounts: list.map((m, i) => ({ name: secretVolumeName(i), mountPath: m.mountPath, readOnly: true })),
  };
}

/** Pod settings that come from the cluster rather than the Function (the registry's address). */
export interface PodExtras {
  hostAliases?: V1HostAlias[];
  /** Where the runner announces its pod once its function is loaded (ADR 0018); nowhere when unset. */
  announceUrl?: string;
}

/**
 * The most a runner is given in one environment variable (function.json, or the code):
 * Linux caps one at 128 KiB. A function over it gets its code from a ConfigMap volume.
 */
export const ENV_CODE_MAX_BYTES = 96 * 1024;

/**
 * The env a function's pod loads its code from when it needs no volume at all: its code and
 * function.json as literal values (FAAS_FUNCTION_CODE, FAAS_FUNCTION_SPEC), when each fits in the
 * environment and it has no package to unpack and no secret files; else undefined. The kubelet
 * starts such a pod about 300 ms sooner: with a volume it waits for the mount in 300 ms polls
 * (ADR 0018). Its /tmp is then the container's own writable layer, capped by an
 * ephemeral-storage limit of the same size as the emptyDir it replaces.
 */
export function codeEnv(fn: FunctionObject): V1EnvVar[] | undefined {
  if (fn.spec.package !== undefined || (fn.spec.secrets?.length ?? 0) > 0) return undefined;
  const { code, ...loadSpec } = toLoadSpec(fn);
  const spec = JSON.stringify(loadSpec);
  if (Buffer.byteLength(code ?? "") > ENV_CODE_MAX_BYTES || Buffer.byteLength(spec) > ENV_CODE_MAX_BYTES)
    return undefined;
  return [
    { name: "FAAS_FUNCTION_SPEC", value: spec },
    ...(code === undefined ? [] : [{ name: "FAAS_FUNCTION_CODE", value: code }]),
  ];
}

/** Whether the function's pod needs no volume at all (`codeEnv`). */
export function startsWithoutVolumes(fn: FunctionObject): boolean {
  return codeEnv(fn) !== undefined;
}

/** The runner's identity from the downward API, and where to announce it (announce.ts in the runners). */
function announceEnv(announceUrl: string | undefined): V1EnvVar[] {
  if (announceUrl === undefined) return [];
  const field = (name: string, fieldPath: string): V1EnvVar => ({ name, valueFrom: { fieldRef: { fieldPath } } });
  return [
    { name: "FAAS_ANNOUNCE_URL", value: announceUrl },
    field("FAAS_POD_NAMESPACE", "metadata.namespace"),
    field("FAAS_POD_NAME", "metadata.name"),
    field("FAAS_POD_UID", "metadata.uid"),
    field("FAAS_POD_IP", "status.podIP"),
  ];
}

/** Room in /tmp: packaged functions unpack their package there (docs/packages.md). */
export const TMP_SIZE = "64Mi";
export const PACKAGE_TMP_SIZE = "1Gi";

export function buildDeployment(
  fn: FunctionObject,
  cfg: DeploymentConfig,
  configHash?: string,
  extras: PodExtras = {},
): V1Deployment {
  const name = fn.metadata.name;
  const secrets = secretVolumes(fn.spec);
  const annotations: Record<string, string> = { [CODE_HASH_ANNOTATION]: functionCodeHash(fn) };
  if (configHash !== undefined) annotations[CONFIG_HASH_ANNOTATION] = configHash;
  const codeConfigMap = configMapName(name, functionCodeHash(fn));
  const base = runnerContainerBase(2, cfg);
  const resources = containerResources(fn.spec, cfg);
  let code: Pick<V1Container, "env" | "volumeMounts"> & { volumes: V1Volume[] };
  // function.json and the code file, the same as the code ConfigMap holds, as literal env values:
  // nothing for the kubelet to fetch (a configMapKeyRef can fail its first lookup, ADR 0018).
  const literal = codeEnv(fn);
  if (literal !== undefined) {
    code = { env: literal, volumes: [] };
    // /tmp is the writable layer: the root filesystem cannot be read-only without a volume for it.
    base.securityContext = { ...base.securityContext, readOnlyRootFilesystem: false };
    resources.limits["ephemeral-storage"] = TMP_SIZE;
    // Set, so the API server does not default it to the limit: like the emptyDir it replaces,
    // /tmp reserves nothing on the node (64Mi a pod would fill a small edge node's disk on paper).
    resources.requests["ephemeral-storage"] = "0";
  } else {
    code = {
      env: [{ name: "FAAS_CODE_DIR", value: CODE_MOUNT_PATH }],
      volumeMounts: [
        { name: "code", mountPath: CODE_MOUNT_PATH, readOnly: true },
        { name: "tmp", mountPath: "/tmp" },
        ...secrets.mounts,
      ],
      volumes: [
        { name: "code", configMap: { name: codeConfigMap, defaultMode: 0o444 } },
        { name: "tmp", emptyDir: { sizeLimit: fn.spec.package === undefined ? TMP_SIZE : PACKAGE_TMP_SIZE } },
        ...secrets.volumes,
      ],
    };
  }
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: childMetadata(fn, deploymentName(name)),
    spec: {
      selector: { matchLabels: { [FUNCTION_LABEL]: name } },
      strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      revisionHistoryLimit: 3,
      template: {
        metadata: { labels: functionLabels(fn), annotations },
        spec: {
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          ...(extras.hostAliases?.length ? { hostAliases: extras.hostAliases } : {}),
          terminationGracePeriodSeconds: terminationGraceSeconds(fn, cfg),
          securityContext: {
            runAsNonRoot: true,
            runAsUser: RUNNER_UID,
            runAsGroup: RUNNER_UID,
            ...(secrets.volumes.length > 0 ? { fsGroup: RUNNER_UID } : {}),
            seccompProfile: { type: "RuntimeDefault" },
          },
          containers: [
            {
              name: RUNNER_CONTAINER,
              image: cfg.images[fn.spec.runtime],
              imagePullPolicy: cfg.imagePullPolicy,
              env: [
                { name: "FAAS_PORT", value: String(RUNNER_PORT) },
                { name: "FAAS_HOST", value: "0.0.0.0" },
                ...(code.env ?? []),
                ...announceEnv(extras.announceUrl),
                ...referencedEnv(fn.spec),
              ],
              ...(fn.spec.envFrom?.length ? { envFrom: fn.spec.envFrom } : {}),
              ...base,
              resources,
              ...(code.volumeMounts === undefined ? {} : { volumeMounts: code.volumeMounts }),
            },
          ],
          ...(code.volumes.length > 0 ? { volumes: code.volumes } : {}),
        },
      },
    },
  };
}

/** The first version of the Deployment, created once with its initial replicas. */
export function buildDeploymentForCreate(
  fn: FunctionObject,
  cfg: DeploymentConfig,
  configHash?: string,
  extras: PodExtras = {},
): V1Deployment {
  const d = buildDeployment(fn, cfg, configHash, extras);
  return { ...d, spec: { ...d.spec!, replicas: fn.spec.minReplicas } };
}
