/** The faas operator: reconciles Function resources into runnable functions on Kubernetes. */
import { KubeClient } from "@faas/kube";
import type { Logger } from "pino";
import { Registry } from "prom-client";
import type { OperatorConfig } from "./config.js";
import { startHealthServer } from "./health.js";
import { Operator } from "./operator.js";

export * from "./config.js";
export { decideIdle, type IdleDecision, type IdleInput } from "./idle-scaler.js";
export { Operator } from "./operator.js";
export { buildConfigMap } from "./resources/config-map.js";
export { buildDeployment } from "./resources/deployment.js";
export { buildHpa, wantsHpa } from "./resources/hpa.js";
export { buildNetworkPolicies } from "./resources/network-policy.js";
export { buildService } from "./resources/service.js";

/**
 * Runs the operator until `signal` aborts (or, without a signal, until SIGINT
 * or SIGTERM), then stops: it steps down as leader so another replica takes
 * over at once. `faas operator` and the operator image both call this.
 */
export async function runOperator(config: OperatorConfig, log: Logger, signal?: AbortSignal): Promise<void> {
  const client = KubeClient.load({ kubeconfig: config.kubeconfig });
  const operator = new Operator(client, config, log);
  let stopSignal = signal;
  const removers: (() => void)[] = [];
  if (stopSignal === undefined) {
    const ac = new AbortController();
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      const onSignal = (): void => ac.abort();
      process.once(sig, onSignal);
      removers.push(() => process.off(sig, onSignal));
    }
    stopSignal = ac.signal;
  }
  log.info(
    { namespace: config.namespace ?? "(all)", leaderElection: config.leaderElection, identity: config.identity },
    "operator starting",
  );
  const registry = new Registry();
  client.metrics.register(registry);
  const health =
    config.healthPort > 0 ? await startHealthServer(config.healthPort, () => operator.synced, registry) : undefined;
  try {
    const stopped = new Promise<void>((resolve) => {
      if (stopSignal.aborted) resolve();
      else stopSignal.addEventListener("abort", () => resolve(), { once: true });
    });
    await Promise.race([operator.start(), stopped]);
    await stopped;
    log.info("operator stopping");
  } finally {
    await operator.stop();
    health?.close();
    for (const remove of removers) remove();
  }
}
