/**
 * `faas stress`: drive a function with concurrent requests and show live
 * throughput, latency and errors — the load tool of the HPA walkthrough.
 */
import type { CommandContext } from "../context.js";
import { CliError, EXIT } from "../exit-codes.js";
import { functionGateway } from "../function-gateway.js";
import { type LoadSummary, parseDuration, runLoad, type WindowStats } from "../load-generator.js";

export interface StressOptions {
  duration: string;
  concurrency: number;
  rate: number;
  maxRequests: number;
  path?: string;
  data?: string;
  method?: string;
  json?: boolean;
  maxErrors?: number;
}

const fmt = (ms: number | undefined): string => (ms === undefined ? "-" : `${ms.toFixed(1)}ms`);

export async function runStress(ctx: CommandContext, name: string, opts: StressOptions): Promise<number> {
  let durationMs: number;
  try {
    durationMs = parseDuration(opts.duration);
  } catch (err) {
    throw new CliError(EXIT.USAGE, (err as Error).message);
  }
  // On a cluster without --gateway, load goes through the CLI's port-forward (the API server
  // relays every byte): enough for the HPA walkthrough; a ClusterIP via --gateway carries more.
  const gateway = await functionGateway(ctx.cfg);
  try {
    return await stress(ctx, name, opts, durationMs, `${gateway.client.url}${gateway.invokePath(name)}`);
  } finally {
    await gateway.close();
  }
}

async function stress(
  ctx: CommandContext,
  name: string,
  opts: StressOptions,
  durationMs: number,
  /** The function's URL on the gateway, without a sub-path. */
  functionUrl: string,
): Promise<number> {
  const { ui } = ctx;
  const sub = opts.path ? (opts.path.startsWith("/") || opts.path.startsWith("?") ? opts.path : `/${opts.path}`) : "";
  const url = `${functionUrl}${sub}`;
  const body = opts.data === undefined ? undefined : Buffer.from(opts.data);
  const abort = new AbortController();
  const previous = ctx.onInterrupt;
  ctx.onInterrupt = () => abort.abort();
  const spinner = ui.spinner(`stressing ${name}: starting ${opts.concurrency} workers`, { quiet: opts.json });
  const line = (w: WindowStats): string =>
    `${(w.elapsedMs / 1000).toFixed(0).padStart(4)}s  ${w.rps.toFixed(0).padStart(6)} req/s  p50 ${fmt(w.p50Ms).padStart(8)}  p99 ${fmt(w.p99Ms).padStart(8)}  errors ${w.errors}`;
  let summary: LoadSummary;
  try {
    summary = await runLoad(
      {
        url,
        method: (opts.method ?? (body ? "POST" : "GET")).toUpperCase(),
        headers: body ? { "content-type": "application/octet-stream" } : {},
        body,
        concurrency: opts.concurrency,
        durationMs,
        maxRequests: opts.maxRequests,
        ratePerSecond: opts.rate,
        signal: abort.signal,
      },
      (w) => {
        if (opts.json) return;
        if (ui.canAnimate) spinner.update(`stressing ${name}: ${line(w)}`);
        else ui.note(line(w));
      },
    );
  } finally {
    spinner.stop();
    ctx.onInterrupt = previous;
  }
  if (opts.json) {
    ui.out(JSON.stringify({ function: name, url, ...summary }, null, 2));
  } else {
    const { c } = ui;
    const statuses = Object.entries(summary.statuses)
      .map(([s, n]) => `${s}×${n}`)
      .join(" ");
    ui.out(
      `${c.bold(name)}: ${summary.requests} requests in ${(summary.durationMs / 1000).toFixed(1)} s = ${summary.rps.toFixed(0)} req/s\n` +
        `latency  p50 ${fmt(summary.p50Ms)}  p95 ${fmt(summary.p95Ms)}  p99 ${fmt(summary.p99Ms)}  max ${fmt(summary.maxMs)}\n` +
        `status   ${statuses || "-"}  ${summary.errors > 0 ? c.red(`errors ${summary.errors}`) : c.green("errors 0")}`,
    );
  }
  if (summary.requests === 0) throw new CliError(EXIT.UNAVAILABLE, `no request completed against ${url}`);
  if (opts.maxErrors !== undefined && summary.errors > opts.maxErrors) return EXIT.FAILED;
  return abort.signal.aborted ? EXIT.INTERRUPTED : EXIT.OK;
}
