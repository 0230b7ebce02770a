/**
 * The warm pool's objects in one namespace (ADR 0008): a Deployment
 * `faas-pool-<runtime>` of generic runner pods, and the Secret holding the
 * token their runners want on `POST /specialize`. Pool pods are locked down
 * like function pods; their runner runs in pool mode (ready while generic,
 * never claimable again after a restart, thanks to a claim file on an emptyDir).
 */
import { randomBytes } from "node:crypto";
import {
  POOL_CLAIM_FILE,
  POOL_LABEL,
  POOL_STATE_DIR,
  POOL_STATE_IDLE,
  POOL_STATE_LABEL,
  POOL_TOKEN_KEY,
  POOL_TOKEN_SECRET,
  poolDeploymentName,
  RUNNER_PORT,
  type Runtime,
} from "@faas/api";
import type { V1Deployment, V1Secret } from "@kubernetes/client-node";
import type { OperatorConfig } from "../config.js";
import { PACKAGE_TMP_SIZE, type PodExtras, RUNNER_UID, runnerContainerBase } from "./deployment.js";
import { MANAGED_BY, MANAGED_BY_LABEL } from "./labels.js";

export const POOL_RUNNER_CONTAINER = "runner";
/** The longest function timeout the spec allows: a claimed pod may run any function. */
const MAX_FUNCTION_TIMEOUT_SECONDS = 900;

export type PoolConfig = Pick<
  OperatorConfig,
  "images" | "imagePullPolicy" | "poolRequests" | "limits" | "preStopSleepSeconds"
>;

export function poolLabels(runtime: Runtime): Record<string, string> {
  return { [POOL_LABEL]: runtime, [MANAGED_BY_LABEL]: MANAGED_BY };
}

export function buildPoolDeployment(
  runtime: Runtime,
  namespace: string,
  size: number,
  cfg: PoolConfig,
  extras: PodExtras = {},
): V1Deployment {
  const podLabels = { ...poolLabels(runtime), [POOL_STATE_LABEL]: POOL_STATE_IDLE };
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: poolDeploymentName(runtime), namespace, labels: poolLabels(runtime) },
    spec: {
      replicas: size,
      // A claimed pod's pool-state label changes, so the ReplicaSet releases it and starts another.
      selector: { matchLabels: { [POOL_LABEL]: runtime, [POOL_STATE_LABEL]: POOL_STATE_IDLE } },
      strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      revisionHistoryLimit: 2,
      template: {
        metadata: { labels: podLabels },
        spec: {
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          // Any function may claim the pod, packaged ones too: they pull from the registry.
          ...(extras.hostAliases?.length ? { hostAliases: extras.hostAliases } : {}),
          terminationGracePeriodSeconds: cfg.preStopSleepSeconds + MAX_FUNCTION_TIMEOUT_SECONDS + 5,
          securityContext: {
            runAsNonRoot: true,
            runAsUser: RUNNER_UID,
            runAsGroup: RUNNER_UID,
            fsGroup: RUNNER_UID,
            seccompProfile: { type: "RuntimeDefault" },
          },
          containers: [
            {
              name: POOL_RUNNER_CONTAINER,
              image: cfg.images[runtime],
              imagePullPolicy: cfg.imagePullPolicy,
              env: [
                { name: "FAAS_PORT", value: String(RUNNER_PORT) },
                { name: "FAAS_HOST", value: "0.0.0.0" },
                // The images default to loading code from /code; a pool pod has none and must specialize.
                { name: "FAAS_CODE_DIR", value: "" },
                { name: "FAAS_POOL_CLAIM_FILE", value: POOL_CLAIM_FILE },
                {
                  name: "FAAS_SPECIALIZE_TOKEN",
                  valueFrom: { secretKeyRef: { name: POOL_TOKEN_SECRET, key: POOL_TOKEN_KEY } },
                },
              ],
              ...runnerContainerBase(1, cfg),
              resources: { requests: { ...cfg.poolRequests }, limits: { ...cfg.limits } },
              volumeMounts: [
                { name: "state", mountPath: POOL_STATE_DIR },
                { name: "tmp", mountPath: "/tmp" },
              ],
            },
          ],
          volumes: [
            { name: "state", emptyDir: { sizeLimit: "1Mi" } },
            { name: "tmp", emptyDir: { sizeLimit: PACKAGE_TMP_SIZE } },
          ],
        },
      },
    },
  };
}

/** A new random token; the Secret is created once and never overwritten. */
export function buildPoolTokenSecret(namespace: string): V1Secret {
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: POOL_TOKEN_SECRET, namespace, labels: { [MANAGED_BY_LABEL]: MANAGED_BY } },
    type: "Opaque",
    stringData: { [POOL_TOKEN_KEY]: randomBytes(32).toString("base64url") },
  };
}
