/**
 * Deployment `fn-<name>-deploy`: the runner image of the function's runtime,
 * loading its code from the ConfigMap at /code on start. Locked down (non-root,
 * read-only root filesystem, no capabilities, no API token); rolls out on a
 * code change through the code hash on the pod template; never drops a request
 * when a pod goes (readiness gate, surge-only rollouts, preStop sleep so
 * endpoints go before SIGTERM, a grace period longer than the function timeout).
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
  RUNNER_PORT,
  toLoadSpec,
} from "@faas/api";
import type { V1Container, V1Deployment } from "@kubernetes/client-node";
import type { OperatorConfig } from "../config.js";
import { childMetadata, type FunctionObject, functionLabels } from "./labels.js";

export { CODE_HASH_ANNOTATION };
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
    securityContext: {
      runAsNonRoot: true,
      runAsUser: RUNNER_UID,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
      seccompProfile: { type: "RuntimeDefault" },
    },
  } satisfies Partial<V1Container>;
}

export function buildDeployment(fn: FunctionObject, cfg: DeploymentConfig): V1Deployment {
  const name = fn.metadata.name;
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: childMetadata(fn, deploymentName(name)),
    spec: {
      selector: { matchLabels: { [FUNCTION_LABEL]: name } },
      strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      revisionHistoryLimit: 3,
      template: {
        metadata: { labels: functionLabels(fn), annotations: { [CODE_HASH_ANNOTATION]: functionCodeHash(fn) } },
        spec: {
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          terminationGracePeriodSeconds: terminationGraceSeconds(fn, cfg),
          securityContext: {
            runAsNonRoot: true,
            runAsUser: RUNNER_UID,
            runAsGroup: RUNNER_UID,
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
                { name: "FAAS_CODE_DIR", value: CODE_MOUNT_PATH },
              ],
              ...runnerContainerBase(2, cfg),
              resources: { requests: { ...cfg.requests }, limits: { ...cfg.limits } },
              volumeMounts: [
                { name: "code", mountPath: CODE_MOUNT_PATH, readOnly: true },
                { name: "tmp", mountPath: "/tmp" },
              ],
            },
          ],
          volumes: [
            { name: "code", configMap: { name: configMapName(name, functionCodeHash(fn)), defaultMode: 0o444 } },
            { name: "tmp", emptyDir: { sizeLimit: "64Mi" } },
          ],
        },
      },
    },
  };
}

/** The first version of the Deployment, created once with its initial replicas. */
export function buildDeploymentForCreate(fn: FunctionObject, cfg: DeploymentConfig): V1Deployment {
  const d = buildDeployment(fn, cfg);
  return { ...d, spec: { ...d.spec!, replicas: fn.spec.minReplicas } };
}
