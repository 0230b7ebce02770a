/**
 * `npm run bench`: cold start in local mode and gateway overhead, printed as
 * tables with the floors of issue 2 checked (printed, never asserted).
 * Every knob is a flag or a BENCH_* environment variable; `--help` lists them.
 */
import { writeFile } from "node:fs/promises";
import { cpus, loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { RUNTIMES, type Runtime } from "@faas/api";
import { buildPackage, installLocal, treeBytes } from "@faas/cli/package";
import { formatColdStart, type PackagedCase, runColdStart } from "./cold-start.js";
import { withResources } from "./lib/processes.js";
import { formatProxyOverhead, runProxyOverhead } from "./proxy-overhead.js";

const KNOBS = {
  only: { default: "all", help: "all | cold | proxy" },
  samples: { default: "60", help: "cold samples per runtime" },
  "warm-requests": { default: "500", help: "sequential warm requests per runtime" },
  "pool-size": { default: "2", help: "warm pool size per runtime" },
  "settle-ms": { default: "100", help: "pause after the pool refilled, before the cold request" },
  runtimes: { default: "python,nodejs", help: "runtimes for the cold-start rows" },
  packaged: { default: "on", help: "on | off: the row of a Python function with ~20 MB of dependencies" },
  "packaged-samples": { default: "20", help: "cold samples of the packaged row" },
  "proxy-runtimes": { default: "nodejs,python", help: "runtimes for the gateway-overhead rows" },
  connections: { default: "50", help: "wrk connections at saturation" },
  duration: { default: "3", help: "seconds per wrk run" },
  "warm-up": { default: "2", help: "seconds of wrk warm-up per row" },
  repeats: { default: "3", help: "repeats of each row (medians reported)" },
  rate: { default: "500", help: "fixed-rate mode, requests per second" },
  "rate-connections": { default: "5", help: "connections in the fixed-rate mode" },
  python: { default: "python3", help: "Python 3.11 interpreter for the Python runner" },
  json: { default: "", help: "also write raw results to this file" },
} as const;
type Knob = keyof typeof KNOBS;

const envName = (k: string): string => `BENCH_${k.toUpperCase().replaceAll("-", "_")}`;

function readKnobs(): Record<Knob, string> {
  const { values } = parseArgs({
    options: {
      ...Object.fromEntries(Object.keys(KNOBS).map((k) => [k, { type: "string" as const }])),
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    const lines = Object.entries(KNOBS).map(
      ([k, v]) => `  --${k.padEnd(16)} ${envName(k).padEnd(22)} ${v.help} (default ${v.default || "none"})`,
    );
    process.stdout.write(
      `usage: npm run bench -- [flags]   (each flag also reads from its env variable)\n${lines.join("\n")}\n`,
    );
    process.exit(0);
  }
  const out = {} as Record<Knob, string>;
  for (const [k, v] of Object.entries(KNOBS) as [Knob, { default: string }][]) {
    const given = (values as Record<string, unknown>)[k];
    out[k] = typeof given === "string" ? given : (process.env[envName(k)] ?? v.default);
  }
  return out;
}

function positive(knobs: Record<Knob, string>, k: Knob): number {
  const n = Number(knobs[k]);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${k} ${knobs[k]}: must be a positive number`);
  return n;
}

function runtimeList(knobs: Record<Knob, string>, k: Knob): Runtime[] {
  const list = knobs[k]
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const rt of list)
    if (!(RUNTIMES as readonly string[]).includes(rt)) throw new Error(`--${k}: unknown runtime "${rt}"`);
  return list as Runtime[];
}

const script = (rel: string): string => fileURLToPath(new URL(rel, import.meta.url));

/** The packaged row's function: bench/functions/py-deps, built with pip into the platform's data dir. */
async function buildBenchPackages(dataDir: string, python: string): Promise<PackagedCase[]> {
  const dir = fileURLToPath(new URL("../functions/py-deps", import.meta.url));
  process.stderr.write("  building the packaged function (pip install, once per run)…\n");
  const started = performance.now();
  const pkg = await buildPackage(
    { dir, runtime: "python", handler: "main.handle" },
    { dataDir, target: { kind: "local", python, npm: "npm" } },
  );
  await installLocal(dataDir, pkg);
  await pkg.cleanup();
  const mb = (pkg.deps === undefined ? 0 : await treeBytes(`${pkg.deps.dir}/site-packages`)) / 1e6;
  process.stderr.write(
    `  built ${pkg.artifact.digest.slice(0, 19)}… in ${((performance.now() - started) / 1000).toFixed(1)} s\n`,
  );
  return [{ label: `python + ${mb.toFixed(1)} MB deps`, runtime: "python", digest: pkg.artifact.digest }];
}

async function main(): Promise<void> {
  const knobs = readKnobs();
  const only = knobs.only;
  if (!["all", "cold", "proxy"].includes(only)) throw new Error(`--only ${only}: must be all, cold or proxy`);
  const cpu = cpus();
  process.stdout.write(
    `faas benchmark, ${new Date().toISOString()}, node ${process.version}, ${cpu.length} x ${cpu[0]?.model ?? "cpu"}, ` +
      `load average ${loadavg()
        .map((l) => l.toFixed(2))
        .join(" ")}\n\n`,
  );
  const raw: Record<string, unknown> = { date: new Date().toISOString(), knobs };
  await withResources(async (r) => {
    if (only !== "proxy") {
      const cold = await runColdStart(r, {
        runtimes: runtimeList(knobs, "runtimes"),
        samples: positive(knobs, "samples"),
        warmRequests: positive(knobs, "warm-requests"),
        poolSize: positive(knobs, "pool-size"),
        settleMs: Number(knobs["settle-ms"]) || 0,
        python: knobs.python,
        platformScript: script("./servers/platform-server.js"),
        packagedSamples: positive(knobs, "packaged-samples"),
        ...(knobs.packaged === "off"
          ? {}
          : { packaged: (dataDir: string) => buildBenchPackages(dataDir, knobs.python) }),
      });
      raw.coldStart = cold;
      process.stdout.write(`${formatColdStart(cold)}\n\n`);
    }
    if (only !== "cold") {
      const opts = {
        runtimes: runtimeList(knobs, "proxy-runtimes"),
        connections: positive(knobs, "connections"),
        durationS: positive(knobs, "duration"),
        warmUpS: positive(knobs, "warm-up"),
        repeats: positive(knobs, "repeats"),
        rate: positive(knobs, "rate"),
        rateConnections: positive(knobs, "rate-connections"),
        python: knobs.python,
        gatewayScript: script("./servers/gateway-server.js"),
        bareProxyScript: script("./servers/bare-proxy.js"),
      };
      const proxy = await runProxyOverhead(r, opts);
      raw.proxyOverhead = proxy;
      process.stdout.write(
        `${typeof proxy === "string" ? `Gateway overhead: ${proxy}` : formatProxyOverhead(proxy, opts)}\n`,
      );
    }
  });
  const load = loadavg()[0] as number;
  if (load > cpu.length) {
    process.stdout.write(
      `\nNOTE: load average ${load.toFixed(2)} on ${cpu.length} cores at the end: other work competed for the CPU, ` +
        "so latencies (most of all the tails) and proxy throughput are lower than on a quiet machine.\n",
    );
  }
  if (knobs.json) await writeFile(knobs.json, `${JSON.stringify(raw, null, 2)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
