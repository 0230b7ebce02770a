/**
 * Gateway overhead: one specialized hello runner, reached four ways by the
 * same client with the same connections — directly, through the gateway,
 * through a bare `node:http` pass-through proxy, and through nginx — at
 * saturation and at a fixed moderate rate. Rows are interleaved and repeated;
 * medians of the repeats are reported.
 */
import type { Runtime } from "@faas/api";
import { cpuSeconds } from "./lib/cpu.js";
import { HELLO_BODY } from "./lib/functions.js";
import { HttpClient } from "./lib/http-client.js";
import { startNginx } from "./lib/nginx.js";
import type { Resources, Server } from "./lib/processes.js";
import { startHelloRunner } from "./lib/runner.js";
import { median, ms, table, verdict } from "./lib/stats.js";
import { Wrk, type WrkResult, type WrkRun } from "./lib/wrk.js";

export interface ProxyOptions {
  runtimes: readonly Runtime[];
  connections: number;
  durationS: number;
  warmUpS: number;
  repeats: number;
  /** Target of the fixed-rate mode, requests per second. */
  rate: number;
  rateConnections: number;
  python: string;
  gatewayScript: string;
  bareProxyScript: string;
}

export type RowName = "direct" | "gateway" | "bare proxy" | "nginx";
const ROWS: readonly RowName[] = ["direct", "gateway", "bare proxy", "nginx"];

/** A wrk run with the CPU the proxy and the runner spent per request. */
export interface Measured extends WrkResult {
  /** CPU of the process in front of the runner (NaN for the direct row). */
  proxyCpuUs: number;
  runnerCpuUs: number;
}

export interface RowResult {
  row: RowName;
  saturation: Measured[];
  fixed: Measured[];
  skipped?: string;
}

export interface ProxyResult {
  runtime: Runtime;
  rows: RowResult[];
}

const FLOOR_THROUGHPUT_RATIO = 0.9;
/** Issue 9: the gateway adds no more than this over calling the runner directly (issue 2 allowed 0.5). */
const FLOOR_ADDED_P50_MS = 0.3;
const FUNCTION_NAME = "bench-hello";

export async function runProxyOverhead(r: Resources, opts: ProxyOptions): Promise<ProxyResult[] | string> {
  const dir = await r.tempDir("wrk");
  const wrk = await Wrk.create(r, dir);
  if (wrk === undefined) return "skipped: wrk is not installed (Debian: apt-get install wrk)";
  const results: ProxyResult[] = [];
  for (const runtime of opts.runtimes) results.push(await measureRuntime(r, wrk, runtime, opts));
  return results;
}

async function measureRuntime(r: Resources, wrk: Wrk, runtime: Runtime, opts: ProxyOptions): Promise<ProxyResult> {
  const runner = await startHelloRunner(r, runtime, FUNCTION_NAME, { python: opts.python });
  const started: Server[] = [];
  try {
    const gateway = await r.startServer("gateway", process.execPath, [
      opts.gatewayScript,
      FUNCTION_NAME,
      runtime,
      String(runner.port),
    ]);
    started.push(gateway);
    const proxy = await r.startServer("bare proxy", process.execPath, [opts.bareProxyScript, String(runner.port)]);
    started.push(proxy);
    const nginx = await startNginx(r, runner.port);
    if (typeof nginx !== "string") started.push(nginx);

    const urls: Partial<Record<RowName, string>> = {
      direct: `http://127.0.0.1:${runner.port}/invoke`,
      gateway: `http://127.0.0.1:${gateway.port}/invoke/${FUNCTION_NAME}`,
      "bare proxy": `http://127.0.0.1:${proxy.port}/invoke`,
    };
    if (typeof nginx !== "string") urls.nginx = `http://127.0.0.1:${nginx.port}/invoke`;
    const pids: Partial<Record<RowName, number>> = { gateway: gateway.pid, "bare proxy": proxy.pid };
    if (typeof nginx !== "string") pids.nginx = nginx.pid;
    const measure = async (row: RowName, run: WrkRun): Promise<Measured> => {
      const front = pids[row];
      const before = await Promise.all([front === undefined ? 0 : cpuSeconds(front), cpuSeconds(runner.pid)]);
      const result = await wrk.run(run);
      const after = await Promise.all([front === undefined ? 0 : cpuSeconds(front), cpuSeconds(runner.pid)]);
      const perRequestUs = (i: number): number =>
        (((after[i] as number) - (before[i] as number)) * 1e6) / result.requests;
      return {
        ...result,
        proxyCpuUs: front === undefined ? Number.NaN : perRequestUs(0),
        runnerCpuUs: perRequestUs(1),
      };
    };
    const rows: RowResult[] = ROWS.map((row) => ({
      row,
      saturation: [],
      fixed: [],
      skipped: urls[row] === undefined ? (nginx as string) : undefined,
    }));
    const live = rows.filter((row) => row.skipped === undefined);
    for (const row of live) await expectHello(urls[row.row] as string);

    const progress = (what: string): void => void process.stderr.write(`  proxy ${runtime}: ${what}\n`);
    progress(`warm-up ${opts.warmUpS} s per row`);
    for (const row of live) {
      await wrk.run({
        url: urls[row.row] as string,
        connections: opts.connections,
        durationS: opts.warmUpS,
        delayMs: 0,
      });
    }
    const delayMs = Math.max(1, Math.round((opts.rateConnections * 1000) / opts.rate));
    for (let rep = 0; rep < opts.repeats; rep++) {
      progress(`repeat ${rep + 1}/${opts.repeats}: saturation, then ~${opts.rate} req/s`);
      // Rotate the order each repeat so no row always runs right after the same neighbour.
      const order = live.map((_, i) => live[(i + rep) % live.length] as RowResult);
      for (const row of order) {
        const url = urls[row.row] as string;
        row.saturation.push(
          await measure(row.row, { url, connections: opts.connections, durationS: opts.durationS, delayMs: 0 }),
        );
      }
      for (const row of order) {
        const url = urls[row.row] as string;
        row.fixed.push(
          await measure(row.row, { url, connections: opts.rateConnections, durationS: opts.durationS, delayMs }),
        );
      }
    }
    return { runtime, rows };
  } finally {
    for (const s of started.reverse()) await r.stop(s);
    await r.stop(runner);
  }
}

async function expectHello(url: string): Promise<void> {
  const u = new URL(url);
  const client = new HttpClient(u);
  try {
    const res = await client.send("GET", u.pathname);
    if (res.status !== 200 || res.body !== HELLO_BODY)
      throw new Error(`GET ${url} → ${res.status} ${res.body.slice(0, 300)}`);
  } finally {
    client.close();
  }
}

interface RowSummary {
  rps: number;
  p50: number;
  p99: number;
  fixedRps: number;
  fixedP50: number;
  fixedP99: number;
  proxyCpuUs: number;
  runnerCpuUs: number;
  errors: number;
}

function summarize(row: RowResult): RowSummary {
  const m = (runs: Measured[], pick: (w: Measured) => number): number => median(runs.map(pick));
  return {
    rps: m(row.saturation, (w) => w.rps),
    p50: m(row.saturation, (w) => w.p50Ms),
    p99: m(row.saturation, (w) => w.p99Ms),
    fixedRps: m(row.fixed, (w) => w.rps),
    fixedP50: m(row.fixed, (w) => w.p50Ms),
    fixedP99: m(row.fixed, (w) => w.p99Ms),
    proxyCpuUs: m(row.saturation, (w) => w.proxyCpuUs),
    runnerCpuUs: m(row.saturation, (w) => w.runnerCpuUs),
    errors: [...row.saturation, ...row.fixed].reduce((n, w) => n + w.errors, 0),
  };
}

export function formatProxyOverhead(results: readonly ProxyResult[], opts: ProxyOptions): string {
  const lines: string[] = [];
  for (const result of results) {
    const s = new Map(result.rows.filter((row) => row.skipped === undefined).map((row) => [row.row, summarize(row)]));
    lines.push(
      `Gateway overhead, ${result.runtime} hello runner (wrk -t1; saturation -c${opts.connections}; ` +
        `fixed ~${opts.rate} req/s over -c${opts.rateConnections}; ${opts.durationS} s runs, medians of ${opts.repeats})`,
    );
    const rows = result.rows.map((row) => {
      const x = s.get(row.row);
      if (x === undefined) return [row.row, "skipped", "", "", "", "", "", "", "", ""];
      return [
        row.row,
        x.rps.toFixed(0),
        ms(x.p50),
        ms(x.p99),
        x.fixedRps.toFixed(0),
        ms(x.fixedP50),
        ms(x.fixedP99),
        Number.isNaN(x.proxyCpuUs) ? "-" : x.proxyCpuUs.toFixed(0),
        x.runnerCpuUs.toFixed(0),
        String(x.errors),
      ];
    });
    lines.push(
      table(
        [
          "row",
          "sat req/s",
          "p50 ms",
          "p99 ms",
          "fixed req/s",
          "p50 ms",
          "p99 ms",
          "proxy CPU us/req",
          "runner CPU us/req",
          "errors",
        ],
        rows,
      ),
    );
    for (const row of result.rows) if (row.skipped !== undefined) lines.push(`  ${row.row}: skipped — ${row.skipped}`);
    const direct = s.get("direct");
    const gateway = s.get("gateway");
    const proxy = s.get("bare proxy");
    const nginx = s.get("nginx");
    if (direct === undefined || gateway === undefined || proxy === undefined) continue;
    const ratio = gateway.rps / proxy.rps;
    const added = gateway.fixedP50 - direct.fixedP50;
    // On a busy machine throughput follows the CPU share a process gets; CPU per request does not.
    const cpuRatio = proxy.proxyCpuUs / gateway.proxyCpuUs;
    lines.push(
      `  gateway/bare-proxy throughput: ${ratio.toFixed(2)} (floor >= ${FLOOR_THROUGHPUT_RATIO}) ${verdict(ratio >= FLOOR_THROUGHPUT_RATIO)}`,
      `  gateway/bare-proxy by CPU per request (bare us / gateway us, the throughput ratio on equal CPU): ` +
        `${cpuRatio.toFixed(2)} (floor >= ${FLOOR_THROUGHPUT_RATIO}) ${verdict(cpuRatio >= FLOOR_THROUGHPUT_RATIO)}`,
      `  gateway - direct p50 at the fixed rate: ${added >= 0 ? "+" : ""}${added.toFixed(3)} ms (floor <= ${FLOOR_ADDED_P50_MS} ms) ${verdict(added <= FLOOR_ADDED_P50_MS)}`,
      `  context: bare-proxy/direct throughput ${(proxy.rps / direct.rps).toFixed(2)}, gateway/direct ${(gateway.rps / direct.rps).toFixed(2)}` +
        (nginx === undefined ? "" : `, nginx/direct ${(nginx.rps / direct.rps).toFixed(2)}`) +
        `; bare-proxy - direct p50 at the fixed rate ${(proxy.fixedP50 - direct.fixedP50).toFixed(3)} ms` +
        (nginx === undefined ? "" : `, nginx - direct ${(nginx.fixedP50 - direct.fixedP50).toFixed(3)} ms`),
    );
    if ([...s.values()].some((x) => x.errors > 0))
      lines.push("  WARNING: some runs had errors (see the errors column)");
  }
  return lines.join("\n");
}
