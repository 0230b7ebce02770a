/**
 * A closed-loop HTTP load generator for `faas stress`: `concurrency` workers
 * each send one request after another over keep-alive connections, until the
 * duration or the request budget runs out. Optionally paced to a total rate.
 */
import { Agent, request } from "node:http";

export interface LoadOptions {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: Buffer | undefined;
  concurrency: number;
  durationMs: number;
  /** Stop after this many requests (a bound even for long durations). */
  maxRequests: number;
  /** Requests per second across all workers; 0 = as fast as replies come. */
  ratePerSecond: number;
  signal: AbortSignal;
}

export interface WindowStats {
  elapsedMs: number;
  requests: number;
  errors: number;
  rps: number;
  p50Ms: number | undefined;
  p99Ms: number | undefined;
}

export interface LoadSummary {
  requests: number;
  errors: number;
  /** Count per HTTP status; transport failures under "error". */
  statuses: Record<string, number>;
  durationMs: number;
  rps: number;
  p50Ms: number | undefined;
  p95Ms: number | undefined;
  p99Ms: number | undefined;
  maxMs: number | undefined;
}

const MAX_SAMPLES = 2_000_000;

export function quantile(sorted: Float64Array, q: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

export async function runLoad(opts: LoadOptions, onWindow: (w: WindowStats) => void): Promise<LoadSummary> {
  const agent = new Agent({ keepAlive: true, maxSockets: opts.concurrency });
  const target = new URL(opts.url);
  const started = performance.now();
  const deadline = started + opts.durationMs;
  const samples = new Float64Array(Math.min(opts.maxRequests, MAX_SAMPLES));
  const statuses: Record<string, number> = {};
  let sent = 0;
  let done = 0;
  let errors = 0;
  let window: number[] = [];
  let windowErrors = 0;
  let windowStart = started;
  const interval = opts.ratePerSecond > 0 ? (1000 * opts.concurrency) / opts.ratePerSecond : 0;

  const flush = (now: number): void => {
    const sorted = Float64Array.from(window).sort();
    const secs = (now - windowStart) / 1000;
    onWindow({
      elapsedMs: now - started,
      requests: window.length,
      errors: windowErrors,
      rps: secs > 0 ? window.length / secs : 0,
      p50Ms: quantile(sorted, 0.5),
      p99Ms: quantile(sorted, 0.99),
    });
    window = [];
    windowErrors = 0;
    windowStart = now;
  };
  const ticker = setInterval(() => flush(performance.now()), 1000);

  const once = (): Promise<void> =>
    new Promise((resolve) => {
      const t0 = performance.now();
      const finish = (status: string, ok: boolean): void => {
        const ms = performance.now() - t0;
        statuses[status] = (statuses[status] ?? 0) + 1;
        if (done < samples.length) samples[done] = ms;
        done++;
        window.push(ms);
        if (!ok) {
          errors++;
          windowErrors++;
        }
        resolve();
      };
      const req = request(
        {
          host: target.hostname,
          port: target.port,
          path: target.pathname + target.search,
          method: opts.method,
          headers: opts.headers,
          agent,
        },
        (res) => {
          res.resume();
          res.on("end", () => finish(String(res.statusCode), (res.statusCode ?? 0) < 400));
          res.on("error", () => finish("error", false));
        },
      );
      req.on("error", () => finish("error", false));
      req.end(opts.body);
    });

  const worker = async (index: number): Promise<void> => {
    let next = started + (interval * index) / opts.concurrency;
    while (!opts.signal.aborted && performance.now() < deadline && sent < opts.maxRequests) {
      if (interval > 0) {
        const wait = next - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        next += interval;
        if (performance.now() >= deadline || opts.signal.aborted) break;
      }
      sent++;
      await once();
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, (_, i) => worker(i)));
  clearInterval(ticker);
  const end = performance.now();
  if (window.length > 0 && end - windowStart >= 250) flush(end);
  agent.destroy();
  const sorted = samples.slice(0, Math.min(done, samples.length)).sort();
  return {
    requests: done,
    errors,
    statuses,
    durationMs: end - started,
    rps: done / ((end - started) / 1000),
    p50Ms: quantile(sorted, 0.5),
    p95Ms: quantile(sorted, 0.95),
    p99Ms: quantile(sorted, 0.99),
    maxMs: sorted.length > 0 ? sorted[sorted.length - 1] : undefined,
  };
}

/** "90s", "2m", "500ms", "1.5h" or plain seconds → milliseconds. */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (m === null) throw new Error(`"${text}" is not a duration (e.g. 30s, 2m, 500ms)`);
  const n = Number(m[1]);
  const unit = m[2] ?? "s";
  return n * (unit === "ms" ? 1 : unit === "s" ? 1000 : unit === "m" ? 60_000 : 3_600_000);
}
