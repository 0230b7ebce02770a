/**
 * Cold start in local mode with a warm pool: for each sample a fresh function
 * at minReplicas 0 is deployed, the pool is let refill, and the first request is
 * timed from the client (activator park + pool claim + POST /specialize + first
 * invocation); then the function is deleted. Warm latency is sequential
 * requests to a replica that is already up.
 */
import { FUNCTION_API_VERSION, FUNCTION_KIND, type Runtime } from "@faas/api";
import { HELLO_BODY, helloCode } from "./lib/functions.js";
import { HttpClient, type TimedResponse } from "./lib/http-client.js";
import type { Resources } from "./lib/processes.js";
import { median, ms, quantile, table, verdict } from "./lib/stats.js";

export interface ColdStartOptions {
  runtimes: readonly Runtime[];
  samples: number;
  warmRequests: number;
  poolSize: number;
  /** Pause after the pool is full again, so the refill's process start is not measured. */
  settleMs: number;
  python: string;
  platformScript: string;
  /**
   * Packaged functions to time beside the plain ones, built into the platform's
   * data dir once it runs (docs/packages.md): each sample deploys a new function
   * naming the same package, so every sample imports the dependencies afresh.
   */
  packaged?: (dataDir: string) => Promise<PackagedCase[]>;
  packagedSamples?: number;
}

export interface PackagedCase {
  label: string;
  runtime: Runtime;
  digest: string;
}

interface ColdSample {
  totalMs: number;
  parkedMs: number;
  scaleUpMs: number;
  specializeMs: number;
  /** The runner's own import of the code, part of specializeMs. */
  importMs: number;
  cold: boolean;
}

export interface ColdStartResult {
  runtime: Runtime;
  /** Row label: the runtime, or a packaged case's label. */
  label: string;
  /** Set for packaged rows. */
  digest?: string;
  cold: ColdSample[];
  warmMs: number[];
}

/** Issue 9's targets (issue 2's floors were 15 and 50 ms). */
const FLOOR_P50_MS = 2.5;
const FLOOR_P99_MS = 10;

export async function runColdStart(r: Resources, opts: ColdStartOptions): Promise<ColdStartResult[]> {
  const dataDir = await r.tempDir("platform");
  const platform = await r.startServer("platform", process.execPath, [opts.platformScript], {
    env: { BENCH_DATA_DIR: dataDir, BENCH_POOL_SIZE: String(opts.poolSize), BENCH_PYTHON: opts.python },
    startTimeoutMs: 60_000,
  });
  const token = String(platform.hello.token);
  const client = new HttpClient(new URL(`http://127.0.0.1:${platform.port}`));
  const admin = { authorization: `Bearer ${token}` };
  const results = opts.runtimes.map((runtime): ColdStartResult => ({ runtime, label: runtime, cold: [], warmMs: [] }));
  try {
    if (opts.packaged !== undefined) {
      for (const c of await opts.packaged(dataDir)) {
        results.push({ runtime: c.runtime, label: c.label, digest: c.digest, cold: [], warmMs: [] });
      }
    }
    await waitForPool(client, opts.runtimes, opts.poolSize);
    const started = performance.now();
    for (let i = 0; i < opts.samples; i++) {
      for (const result of results) {
        if (result.digest !== undefined && i >= (opts.packagedSamples ?? opts.samples)) continue;
        result.cold.push(await coldSample(client, admin, result, i, opts));
      }
      if ((i + 1) % 10 === 0 || i + 1 === opts.samples) {
        const s = ((performance.now() - started) / 1000).toFixed(0);
        process.stderr.write(`  cold start: ${i + 1}/${opts.samples} samples per runtime (${s} s)\n`);
      }
    }
    for (const result of results) result.warmMs = await warmLatency(client, admin, result, opts);
  } catch (err) {
    throw new Error(`${err instanceof Error ? err.message : String(err)}\nplatform output:\n${platform.tail()}`, {
      cause: err,
    });
  } finally {
    client.close();
    await r.stop(platform);
  }
  return results;
}

const shortName = (r: ColdStartResult): string =>
  `${r.runtime === "python" ? "py" : "node"}${r.digest === undefined ? "" : "-pkg"}`;

async function coldSample(
  client: HttpClient,
  admin: Record<string, string>,
  row: ColdStartResult,
  i: number,
  opts: ColdStartOptions,
): Promise<ColdSample> {
  const runtime = row.runtime;
  const name = `cold-${shortName(row)}-${i}`;
  await deploy(client, admin, name, row, `sample ${i}`);
  // Deploying trial-loads the code in a pooled runner, so the pool refills first.
  await waitForPool(client, [runtime], opts.poolSize);
  await sleep(opts.settleMs);
  const res = await client.send("GET", `/invoke/${name}`);
  expectHello(res, name);
  await client.json("DELETE", `/admin/functions/${name}`, { headers: admin });
  const timing = parseServerTiming(res.headers["server-timing"]);
  return {
    totalMs: res.ms,
    parkedMs: timing.parked ?? Number.NaN,
    scaleUpMs: timing.scaleup ?? Number.NaN,
    specializeMs: timing.specialize ?? Number.NaN,
    importMs: timing.import ?? Number.NaN,
    cold: res.headers["x-faas-cold-start"] === "true",
  };
}

async function warmLatency(
  client: HttpClient,
  admin: Record<string, string>,
  row: ColdStartResult,
  opts: ColdStartOptions,
): Promise<number[]> {
  const name = `warm-${shortName(row)}`;
  await deploy(client, admin, name, row, "warm");
  const times: number[] = [];
  const warmUp = Math.min(200, Math.max(20, opts.warmRequests >> 2));
  for (let i = 0; i < warmUp + opts.warmRequests; i++) {
    const res = await client.send("GET", `/invoke/${name}`);
    expectHello(res, name);
    if (i >= warmUp) times.push(res.ms);
  }
  await client.json("DELETE", `/admin/functions/${name}`, { headers: admin });
  return times;
}

async function deploy(
  client: HttpClient,
  admin: Record<string, string>,
  name: string,
  row: ColdStartResult,
  tag: string,
): Promise<void> {
  const runtime = row.runtime;
  const code = row.digest === undefined ? { code: helloCode(runtime, tag) } : { package: { digest: row.digest } };
  await client.json("PUT", `/admin/functions/${name}`, {
    headers: admin,
    body: {
      apiVersion: FUNCTION_API_VERSION,
      kind: FUNCTION_KIND,
      metadata: { name },
      spec: { runtime, handler: "main.handle", ...code, minReplicas: 0, maxReplicas: 1 },
    },
  });
}

function expectHello(res: TimedResponse, name: string): void {
  if (res.status !== 200 || res.body !== HELLO_BODY) {
    throw new Error(`GET /invoke/${name} → ${res.status} ${JSON.stringify(res.body.slice(0, 300))}`);
  }
}

/** Polls /metrics until every runtime's warm pool holds `size` idle runners. */
async function waitForPool(
  client: HttpClient,
  runtimes: readonly Runtime[],
  size: number,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let last = "";
  while (performance.now() < deadline) {
    const res = await client.send("GET", "/metrics");
    last = res.body;
    if (runtimes.every((rt) => poolIdle(last, rt) >= size)) return;
    await sleep(10);
  }
  const seen = runtimes.map((rt) => `${rt}=${poolIdle(last, rt)}`).join(", ");
  throw new Error(`warm pool did not refill to ${size} within ${timeoutMs} ms (idle: ${seen})`);
}

function poolIdle(metrics: string, runtime: Runtime): number {
  const m = new RegExp(`^faas_warm_pool_idle_runners\\{runtime="${runtime}"\\} (\\d+)`, "m").exec(metrics);
  return m === null ? 0 : Number(m[1]);
}

/** `parked;dur=1.2, scaleup;dur=0.1, specialize;dur=3.4` → { parked: 1.2, … }. */
export function parseServerTiming(header: string | string[] | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  const text = Array.isArray(header) ? header.join(",") : (header ?? "");
  for (const part of text.split(",")) {
    const [metric, ...params] = part.trim().split(";");
    const dur = params.map((p) => p.trim()).find((p) => p.startsWith("dur="));
    if (metric && dur) out[metric] = Number(dur.slice(4));
  }
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function formatColdStart(results: readonly ColdStartResult[]): string {
  const rows = results.map((r) => {
    const total = r.cold.map((s) => s.totalMs);
    const outside = r.cold.map((s) => s.totalMs - s.parkedMs);
    return [
      r.label,
      String(r.cold.length),
      ms(quantile(total, 0.5)),
      ms(quantile(total, 0.95)),
      ms(quantile(total, 0.99)),
      ms(median(r.cold.map((s) => s.parkedMs))),
      ms(median(r.cold.map((s) => s.scaleUpMs))),
      ms(median(r.cold.map((s) => s.specializeMs))),
      ms(median(r.cold.map((s) => s.importMs))),
      ms(median(outside)),
      ms(quantile(r.warmMs, 0.5)),
      ms(quantile(r.warmMs, 0.99)),
    ];
  });
  const lines = [
    "Cold start, local mode with warm pool (ms, client-side, first request of a function at zero replicas)",
    table(
      [
        "runtime",
        "n",
        "cold p50",
        "p95",
        "p99",
        "parked",
        "scaleup",
        "specialize",
        "import",
        "rest",
        "warm p50",
        "warm p99",
      ],
      rows,
    ),
    "  parked/scaleup/specialize/import/rest: medians; parked, scaleup, specialize and import come from the server-timing header",
    "  (import: the runner's own import of the code, part of specialize),",
    "  rest = client total - parked (connection, gateway routing, first invocation in the runner).",
  ];
  for (const r of results) {
    const notCold = r.cold.filter((s) => !s.cold).length;
    if (notCold > 0) lines.push(`  WARNING ${r.label}: ${notCold} samples were not marked cold (x-faas-cold-start)`);
    // The floors are for the plain function; a packaged row is there to compare with it.
    if (r.digest !== undefined) continue;
    const p50 = quantile(
      r.cold.map((s) => s.totalMs),
      0.5,
    );
    const p99 = quantile(
      r.cold.map((s) => s.totalMs),
      0.99,
    );
    lines.push(
      `  floor ${r.runtime}: cold p50 ${ms(p50)} ms <= ${FLOOR_P50_MS} ms ${verdict(p50 <= FLOOR_P50_MS)}; ` +
        `p99 ${ms(p99)} ms <= ${FLOOR_P99_MS} ms ${verdict(p99 <= FLOOR_P99_MS)}`,
    );
  }
  return lines.join("\n");
}
