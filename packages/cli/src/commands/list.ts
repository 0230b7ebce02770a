/** `faas list`: every function with its replicas, cold starts and latency. */
import type { FunctionSummary } from "@faas/gateway";
import { clusterTarget } from "../cluster-context.js";
import { type CommandContext, gatewayClient } from "../context.js";
import { EXIT } from "../exit-codes.js";
import { type Colors, formatTable } from "../ui.js";

export async function runList(ctx: CommandContext, opts: { json?: boolean }): Promise<number> {
  const { ui } = ctx;
  const cluster = clusterTarget(ctx.cfg);
  if (cluster !== undefined) return (await import("../cluster/list.js")).listOnCluster(ctx, cluster, opts);
  const client = await gatewayClient(ctx.cfg);
  const { items } = (await client.admin("GET", "/functions")) as { items: FunctionSummary[] };
  if (opts.json) {
    ui.out(JSON.stringify(items, null, 2));
    return EXIT.OK;
  }
  if (items.length === 0) {
    ui.out(ui.c.dim("no functions; deploy one with `faas deploy -f FILE`"));
    return EXIT.OK;
  }
  const { c } = ui;
  const rows = items.map((f) => [
    c.bold(f.name),
    f.runtime,
    readyCell(f, c),
    `${f.minReplicas}/${f.maxReplicas}`,
    String(f.coldStarts),
    f.p50Ms === null ? c.dim("-") : `${f.p50Ms.toFixed(1)}ms`,
    authCell(f, c),
    f.url,
  ]);
  ui.out(formatTable(["NAME", "RUNTIME", "READY", "MIN/MAX", "COLD-STARTS", "P50", "AUTH", "URL"], rows, c));
  return EXIT.OK;
}

function readyCell(f: FunctionSummary, c: Colors): string {
  const text = `${f.readyReplicas}/${f.desiredReplicas}`;
  if (f.readyReplicas === 0 && f.desiredReplicas === 0) return c.dim(text);
  return f.readyReplicas < f.desiredReplicas ? c.yellow(text) : c.green(text);
}

/** `none`, or `apiKey (N keys)`: how many, never which. */
function authCell(f: FunctionSummary, c: Colors): string {
  if (f.auth === "none") return c.dim("none");
  const text = `${f.auth} (${f.apiKeys} key${f.apiKeys === 1 ? "" : "s"})`;
  return f.apiKeys === 0 ? c.yellow(text) : text;
}
