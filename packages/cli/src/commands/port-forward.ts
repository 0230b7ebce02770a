/** `faas port-forward`: the cluster's gateway on a local port; cluster mode only. */
import { clusterTarget } from "../cluster-context.js";
import type { CommandContext } from "../context.js";
import { CliError, EXIT } from "../exit-codes.js";

export async function runPortForwardCommand(ctx: CommandContext, opts: { port: number }): Promise<number> {
  const cluster = clusterTarget(ctx.cfg);
  if (cluster === undefined) {
    throw new CliError(
      EXIT.USAGE,
      "port-forward works on a cluster: give --context NAME (or --kubeconfig FILE, or set FAAS_CONTEXT)",
      "locally the gateway already listens on 127.0.0.1 (faas up)",
    );
  }
  return (await import("../cluster/gateway-forward.js")).runPortForward(ctx, cluster, opts);
}
