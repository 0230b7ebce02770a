/**
 * The gateway `invoke` and `stress` call a function through: on a cluster
 * (a kubeconfig context given), `--gateway` or the CLI's own port-forward,
 * loaded only then; otherwise the local platform's gateway.
 */
import { clusterTarget } from "./cluster-context.js";
import type { CliConfig } from "./config.js";
import { gatewayClient } from "./context.js";
import type { GatewayClient } from "./gateway-client.js";

export interface FunctionGateway {
  client: GatewayClient;
  /** Where the function is on that gateway: `/invoke/<name>`, or with its namespace on a cluster. */
  invokePath(name: string): string;
  close(): Promise<void>;
}

export async function functionGateway(cfg: CliConfig): Promise<FunctionGateway> {
  const cluster = clusterTarget(cfg);
  if (cluster !== undefined) return (await import("./cluster/gateway-forward.js")).clusterGateway(cfg, cluster);
  return {
    client: await gatewayClient(cfg),
    invokePath: (n: string) => `/invoke/${encodeURIComponent(n)}`,
    close: async () => {},
  };
}
