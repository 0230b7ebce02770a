/** `faas logs`: what a function's runners printed, optionally followed live. */
import { pipeline } from "node:stream/promises";
import { clusterTarget } from "../cluster-context.js";
import { type CommandContext, gatewayClient } from "../context.js";
import { EXIT } from "../exit-codes.js";

export async function runLogs(
  ctx: CommandContext,
  name: string,
  opts: { follow?: boolean; tail: number },
): Promise<number> {
  const cluster = clusterTarget(ctx.cfg);
  if (cluster !== undefined) return (await import("../cluster/logs.js")).logsOnCluster(ctx, cluster, name, opts);
  const client = await gatewayClient(ctx.cfg);
  const query = new URLSearchParams({ tail: String(opts.tail), follow: opts.follow ? "1" : "0" });
  const abort = new AbortController();
  ctx.onInterrupt = () => {
    abort.abort();
    process.exit(EXIT.INTERRUPTED);
  };
  const res = await client.adminStream(`/functions/${encodeURIComponent(name)}/logs?${query}`, abort.signal);
  await pipeline(res, ctx.ui.stdout, { end: false });
  return EXIT.OK;
}
