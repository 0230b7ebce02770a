/**
 * The load client for the proxy rows: wrk (C, one thread), because it costs
 * the 2-core machine little CPU and measures latency in microseconds
 * (autocannon's histogram has 1 ms resolution, too coarse for a 0.5 ms floor).
 * A Lua script prints the summary as one JSON line and, for the fixed-rate
 * mode, spaces each connection's requests by a random delay.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { findExecutable } from "./executables.js";
import type { Resources } from "./processes.js";

export interface WrkResult {
  requests: number;
  durationS: number;
  rps: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Connect/read/write/timeout errors and non-2xx/3xx answers. */
  errors: number;
}

export interface WrkRun {
  url: string;
  connections: number;
  durationS: number;
  /** Mean pause between a connection's requests (0 = as fast as possible). */
  delayMs: number;
}

const SCRIPT = `
local mean_delay = tonumber(os.getenv("BENCH_WRK_DELAY_MS") or "0")
if mean_delay > 0 then
  math.randomseed(os.time())
  -- Uniform on [0.5, 1.5] x mean: connections drift apart instead of firing in step.
  function delay()
    return math.floor(mean_delay * (0.5 + math.random()) + 0.5)
  end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"durationUs":%d,"errors":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
`;

export class Wrk {
  private constructor(
    private readonly r: Resources,
    private readonly bin: string,
    private readonly script: string,
  ) {}

  /** undefined when wrk is not installed. */
  static async create(r: Resources, dir: string): Promise<Wrk | undefined> {
    const bin = await findExecutable("wrk");
    if (bin === undefined) return undefined;
    const script = join(dir, "bench.lua");
    await writeFile(script, SCRIPT);
    return new Wrk(r, bin, script);
  }

  async run(run: WrkRun): Promise<WrkResult> {
    const args = ["-t1", `-c${run.connections}`, `-d${run.durationS}s`, "--timeout", "10s", "-s", this.script, run.url];
    const out = await this.r.run("wrk", this.bin, args, { env: { BENCH_WRK_DELAY_MS: String(run.delayMs) } });
    const line = out.split("\n").find((l) => l.startsWith('{"requests"'));
    if (line === undefined) throw new Error(`wrk printed no summary:\n${out}`);
    const j = JSON.parse(line) as Record<string, number>;
    const durationS = (j.durationUs as number) / 1e6;
    return {
      requests: j.requests as number,
      durationS,
      rps: (j.requests as number) / durationS,
      p50Ms: (j.p50 as number) / 1000,
      p90Ms: (j.p90 as number) / 1000,
      p99Ms: (j.p99 as number) / 1000,
      maxMs: (j.max as number) / 1000,
      errors: j.errors as number,
    };
  }
}
