/**
 * The gateway of a cluster, for `faas invoke`: `--gateway URL` when given,
 * otherwise a port-forward of our own to a ready gateway pod, which moves to
 * another ready pod when its pod goes (unlike `kubectl port-forward svc/…`).
 */
import { GATEWAY_PORT, SYSTEM_NAMESPACE } from "@faas/api";
import { PortForwarder } from "@faas/kube";
import { type ClusterTarget, connectCluster } from "../cluster-context.js";
import type { CliConfig } from "../config.js";
import { CliError, EXIT } from "../exit-codes.js";
import { GatewayClient } from "../gateway-client.js";
import { GATEWAY_SELECTOR } from "./gateway-figures.js";

export interface ClusterGateway {
  client: GatewayClient;
  /** The gateway pods connections went to (empty with --gateway). */
  pods: readonly string[];
  close(): Promise<void>;
}

export async function clusterGateway(cfg: CliConfig, target: ClusterTarget): Promise<ClusterGateway> {
  const resolveAt = (url: string): Promise<GatewayClient> =>
    GatewayClient.resolve({ dataDir: cfg.dataDir, urlOverride: url, token: undefined, defaultUrl: url });
  if (cfg.gatewayUrl !== undefined) {
    return { client: await resolveAt(cfg.gatewayUrl), pods: [], close: async () => {} };
  }
  const conn = await connectCluster(target);
  const forwarder = new PortForwarder(conn.kube, {
    namespace: SYSTEM_NAMESPACE,
    selector: GATEWAY_SELECTOR,
    port: GATEWAY_PORT,
  });
  let port: number;
  try {
    port = await forwarder.start();
  } catch (err) {
    throw new CliError(
      EXIT.UNAVAILABLE,
      `cannot reach the gateway (${conn.where}): ${(err as Error).message}`,
      "is the gateway installed and ready? (kubectl apply -f gateway-deploy.yaml); or pass --gateway URL",
      { cause: err },
    );
  }
  return {
    client: await resolveAt(`http://127.0.0.1:${port}`),
    pods: forwarder.podsUsed,
    close: () => forwarder.close(),
  };
}
