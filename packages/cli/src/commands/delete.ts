/** `faas delete`: removes a function; its replicas finish in-flight requests first. */
import { clusterTarget } from "../cluster-context.js";
import { type CommandContext, gatewayClient } from "../context.js";
import { EXIT } from "../exit-codes.js";

export async function runDelete(ctx: CommandContext, name: string, opts: { json?: boolean }): Promise<number> {
  const { ui } = ctx;
  const cluster = clusterTarget(ctx.cfg);
  if (cluster !== undefined) return (await import("../cluster/delete.js")).deleteOnCluster(ctx, cluster, name, opts);
  const client = await gatewayClient(ctx.cfg);
  const spinner = ui.spinner(`deleting ${name} (replicas finish their requests)…`, { quiet: opts.json });
  try {
    await client.admin("DELETE", `/functions/${encodeURIComponent(name)}`);
  } finally {
    spinner.stop();
  }
  ui.out(opts.json ? JSON.stringify({ deleted: name }) : `${ui.c.green("deleted")} ${ui.c.bold(name)}`);
  return EXIT.OK;
}
