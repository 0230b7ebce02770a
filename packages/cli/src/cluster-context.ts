/**
 * Which Kubernetes cluster a command works on, if any: `--context`,
 * `--kubeconfig` (or FAAS_CONTEXT, FAAS_KUBECONFIG) switch a command from the
 * local platform to a cluster; `--namespace` (FAAS_NAMESPACE) picks the
 * namespace, else the context's, else `default`. Without them nothing here
 * loads Kubernetes code: `connectCluster` imports it when it is called (ADR 0001).
 */
import type { KubeClient } from "@faas/kube";
import type { CliConfig } from "./config.js";
import { CliError, EXIT } from "./exit-codes.js";

export interface ClusterTarget {
  context: string | undefined;
  kubeconfig: string | undefined;
  namespace: string | undefined;
}

export interface ClusterConnection {
  kube: KubeClient;
  namespace: string;
  /** For messages: `context faas, namespace default`. */
  where: string;
}

/** The cluster to work on, or undefined for the local platform. */
export function clusterTarget(cfg: Pick<CliConfig, "cluster">): ClusterTarget | undefined {
  const { context, kubeconfig } = cfg.cluster;
  return context === undefined && kubeconfig === undefined ? undefined : cfg.cluster;
}

/** Loads the kubeconfig (a missing file or context is a usage error, exit 2). */
export async function connectCluster(target: ClusterTarget): Promise<ClusterConnection> {
  const { KubeClient } = await import("@faas/kube");
  let kube: KubeClient;
  try {
    kube = KubeClient.load({ kubeconfig: target.kubeconfig, context: target.context, requestTimeoutMs: 15_000 });
  } catch (err) {
    throw new CliError(
      EXIT.USAGE,
      `cannot use the kubeconfig${target.kubeconfig ? ` ${target.kubeconfig}` : ""}: ${(err as Error).message}`,
      "`kubectl config get-contexts` lists the contexts; pass one with --context",
      { cause: err },
    );
  }
  const namespace = target.namespace ?? kube.namespace;
  return { kube, namespace, where: `context ${kube.config.getCurrentContext()}, namespace ${namespace}` };
}
