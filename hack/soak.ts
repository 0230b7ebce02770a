/**
 * `npm run soak`: mixed load against a real `faas up` on loopback, watching the
 * gateway process for leaks.
 *
 *   npm run soak -- [--duration 10m] [--warmup 60s] [--functions 200] [--rate 100]
 *
 * Load, all at once: warm calls to a Python and a Node.js function (`--rate`
 * a second), cold starts (functions that scale to zero after 1 s, called every
 * few seconds), deploy → call → delete churn over `--functions` names, and
 * handlers that throw (500 HANDLER_ERROR) and hang (504 HANDLER_TIMEOUT).
 * Every 10 s it samples the gateway's RSS and open file descriptors from
 * /proc/<pid> and prints a table row. At the end it asserts that RSS and file
 * descriptors grew ≤ 10 % after warm-up (median of the first third of the
 * samples against the median of the last third), and that no 5xx came but those the
 * handlers asked for (counted by code). Exits 1 otherwise.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { Agent, request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const { values } = parseArgs({
  options: {
    duration: { type: "string", default: "10m" },
    warmup: { type: "string", default: "60s" },
    functions: { type: "string", default: "200" },
    rate: { type: "string", default: "100" },
    "sample-seconds": { type: "string", default: "10" },
  },
});

function seconds(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s);
  if (!m) throw new Error(`not a duration: ${s} (e.g. 90s, 10m)`);
  const n = Number(m[1]);
  return m[2] === "ms" ? n / 1000 : m[2] === "m" ? n * 60 : m[2] === "h" ? n * 3600 : n;
}

const durationS = seconds(values.duration);
const warmupS = seconds(values.warmup);
const churnNames = Number(values.functions);
const warmRate = Number(values.rate);
const sampleS = Number(values["sample-seconds"]);

const PY_OK = `def handle(req):\n    return {"ok": True, "path": req.path, "bytes": len(req.body)}\n`;
const NODE_OK = `export async function handle(req) {\n  return { ok: true, bytes: (await req.arrayBuffer()).byteLength };\n}\n`;
const PY_THROW = `def handle(req):\n    raise ValueError("asked to fail")\n`;
const NODE_THROW = `export function handle() {\n  throw new Error("asked to fail");\n}\n`;
const PY_HANG = `import time\n\ndef handle(req):\n    time.sleep(3600)\n`;
const NODE_HANG = `export function handle() {\n  return new Promise(() => {});\n}\n`;

function fn(name: string, runtime: "python" | "nodejs", code: string, spec: Record<string, unknown> = {}) {
  return { apiVersion: "faas.example.com/v1", kind: "Function", metadata: { name }, spec: { runtime, code, ...spec } };
}

const STATIC = [
  fn("warm-py", "python", PY_OK, { minReplicas: 1, maxReplicas: 2 }),
  fn("warm-node", "nodejs", NODE_OK, { minReplicas: 1, maxReplicas: 2 }),
  fn("cold-py", "python", PY_OK, { idleSeconds: 1 }),
  fn("cold-node", "nodejs", NODE_OK, { idleSeconds: 1 }),
  fn("throw-py", "python", PY_THROW),
  fn("throw-node", "nodejs", NODE_THROW),
  fn("hang-py", "python", PY_HANG, { timeoutSeconds: 1 }),
  fn("hang-node", "nodejs", NODE_HANG, { timeoutSeconds: 1 }),
];
/** The 5xx each function asks for; any other 5xx is the platform's fault. */
const ASKED: Record<string, string> = {
  "throw-py": "HANDLER_ERROR",
  "throw-node": "HANDLER_ERROR",
  "hang-py": "HANDLER_TIMEOUT",
  "hang-node": "HANDLER_TIMEOUT",
};

const agent = new Agent({ keepAlive: true, maxSockets: 64 });

interface Reply {
  status: number;
  code?: string;
  cold: boolean;
}

/** Keep-alive races: a reused idle connection that the gateway closed at the same moment (then retried once). */
let keepAliveRaces = 0;

async function send(base: string, method: string, path: string, body?: string, headers: Record<string, string> = {}) {
  try {
    return await sendOnce(base, method, path, body, headers);
  } catch (err) {
    // Node's documented remedy (request.reusedSocket): the request never reached the server.
    if ((err as { reusedSocket?: boolean }).reusedSocket !== true) throw err;
    keepAliveRaces++;
    return sendOnce(base, method, path, body, headers);
  }
}

function sendOnce(base: string, method: string, path: string, body?: string, headers: Record<string, string> = {}) {
  return new Promise<Reply>((resolve, reject) => {
    const req = request(`${base}${path}`, { method, agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", reject);
      res.on("end", () => {
        let code = res.headers["x-faas-error"] as string | undefined;
        if (code === undefined && (res.statusCode ?? 0) >= 500) {
          try {
            code = (JSON.parse(Buffer.concat(chunks).toString()) as { error?: { code?: string } }).error?.code;
          } catch {
            code = "unparsed";
          }
        }
        resolve({ status: res.statusCode ?? 0, cold: res.headers["x-faas-cold-start"] === "true", code });
      });
    });
    req.on("error", (err: NodeJS.ErrnoException) =>
      reject(Object.assign(err, { reusedSocket: req.reusedSocket && err.code === "ECONNRESET" })),
    );
    req.end(body);
  });
}

class Tally {
  requests = 0;
  cold = 0;
  deploys = 0;
  deletes = 0;
  readonly statuses = new Map<number, number>();
  readonly asked5xx = new Map<string, number>();
  readonly unexpected = new Map<string, number>();

  record(fnName: string, r: Reply | Error): void {
    this.requests++;
    if (r instanceof Error) {
      const key = `${fnName}: ${(r as NodeJS.ErrnoException).code ?? r.message}`;
      this.unexpected.set(key, (this.unexpected.get(key) ?? 0) + 1);
      return;
    }
    this.statuses.set(r.status, (this.statuses.get(r.status) ?? 0) + 1);
    if (r.cold) this.cold++;
    if (r.status < 500) return;
    const asked = ASKED[fnName];
    if (asked !== undefined && r.code === asked) this.asked5xx.set(r.code, (this.asked5xx.get(r.code) ?? 0) + 1);
    else {
      const key = `${r.status} ${r.code ?? "?"} (${fnName.replace(/-\d+$/, "-N")})`;
      this.unexpected.set(key, (this.unexpected.get(key) ?? 0) + 1);
    }
  }

  get unexpectedCount(): number {
    return [...this.unexpected.values()].reduce((a, b) => a + b, 0);
  }
}

interface Sample {
  t: number;
  rssMiB: number;
  fds: number;
  ownFds: number;
  sockets: number;
  pipes: number;
  requests: number;
  unexpected: number;
  deployed: number;
}

/** Socket inodes of TCP connections to `port` on this host (the load generator's, to the gateway). */
function clientSocketInodes(pid: number, port: number): Set<string> {
  const inodes = new Set<string>();
  for (const table of ["tcp", "tcp6"]) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/net/${table}`, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      const local = cols[1];
      if (local === undefined || cols[3] === "0A") continue; // 0A: the listening socket
      if (Number.parseInt(local.slice(local.lastIndexOf(":") + 1), 16) === port) inodes.add(cols[9] ?? "");
    }
  }
  return inodes;
}

interface ProcessSample {
  rssMiB: number;
  fds: number;
  /** Descriptors less the load generator's own connections (which come and go with its concurrency). */
  ownFds: number;
  sockets: number;
  pipes: number;
}

function sampleProcess(pid: number, port: number): ProcessSample {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
  let sockets = 0;
  let pipes = 0;
  let clients = 0;
  const clientInodes = clientSocketInodes(pid, port);
  const fds = readdirSync(`/proc/${pid}/fd`);
  for (const fd of fds) {
    try {
      const link = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (link.startsWith("socket:")) {
        sockets++;
        if (clientInodes.has(link.slice(8, -1))) clients++;
      } else if (link.startsWith("pipe:")) pipes++;
    } catch {
      // closed between the listing and the read
    }
  }
  return { rssMiB: rssKiB / 1024, fds: fds.length, ownFds: fds.length - clients, sockets, pipes };
}

async function startUp(dataDir: string): Promise<{ proc: ChildProcess; url: string; token: string }> {
  const file = join(dataDir, "functions.yaml");
  await writeFile(file, STATIC.map((f) => JSON.stringify(f)).join("\n---\n"));
  const env: NodeJS.ProcessEnv = { ...process.env, FAAS_DATA_DIR: dataDir, NO_COLOR: "1" };
  for (const key of ["FAAS_GATEWAY", "FAAS_ADMIN_TOKEN", "FAAS_GATEWAY_PORT", "FAAS_LOG_LEVEL", "FORCE_COLOR"]) {
    delete env[key];
  }
  const proc = spawn(
    process.execPath,
    [join(ROOT, "packages/cli/dist/main.js"), "up", "--port", "0", "--pool-size", "2", "-f", file],
    { env, stdio: ["ignore", "ignore", "inherit"] },
  );
  const stateFile = join(dataDir, "gateway.json");
  const deadline = Date.now() + 60_000;
  while (!existsSync(stateFile)) {
    if (proc.exitCode !== null) throw new Error(`faas up exited with ${proc.exitCode}`);
    if (Date.now() > deadline) throw new Error(`no ${stateFile} after 60 s`);
    await sleep(100);
  }
  const state = JSON.parse(await readFile(stateFile, "utf8")) as { url: string; token: string };
  return { proc, ...state };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<number> {
  const dataDir = await mkdtemp(join(tmpdir(), "faas-soak-"));
  const { proc, url, token } = await startUp(dataDir);
  const pid = proc.pid as number;
  const gatewayPort = Number(new URL(url).port);
  const admin = { authorization: `Bearer ${token}`, "content-type": "application/json" };
  const tally = new Tally();
  const deployed = new Set<string>();
  const endAt = performance.now() + durationS * 1000;
  const running = () => performance.now() < endAt && proc.exitCode === null;
  const invoke = async (name: string, body?: string): Promise<void> => {
    try {
      tally.record(name, await send(url, body === undefined ? "GET" : "POST", `/invoke/${name}/x?y=1`, body));
    } catch (err) {
      tally.record(name, err as Error);
    }
  };

  console.log(
    `soak: ${durationS} s (warm-up ${warmupS} s), gateway pid ${pid} at ${url}, ${warmRate} warm calls/s, churn over ${churnNames} functions`,
  );
  for (const f of ["warm-py", "warm-node"]) await invoke(f);

  const loops: Promise<void>[] = [];
  // Warm calls at a steady rate, half with a small body.
  loops.push(
    (async () => {
      const intervalMs = 1000 / warmRate;
      let next = performance.now();
      let i = 0;
      const inFlight = new Set<Promise<void>>();
      while (running()) {
        const name = i % 2 === 0 ? "warm-py" : "warm-node";
        const p = invoke(name, i % 4 < 2 ? undefined : `{"i":${i}}`);
        inFlight.add(p);
        void p.finally(() => inFlight.delete(p));
        i++;
        next += intervalMs;
        const wait = next - performance.now();
        if (wait > 0) await sleep(wait);
      }
      await Promise.all(inFlight);
    })(),
  );
  // Cold starts: these scale to zero after 1 s idle.
  loops.push(
    (async () => {
      while (running()) {
        await Promise.all([invoke("cold-py"), invoke("cold-node")]);
        await sleep(3000);
      }
    })(),
  );
  // Handlers that throw, and that hang past their 1 s timeout.
  loops.push(
    (async () => {
      while (running()) {
        await Promise.all([invoke("throw-py"), invoke("throw-node"), invoke("hang-py"), invoke("hang-node")]);
        await sleep(1000);
      }
    })(),
  );
  // Deploy → call → delete churn over `churnNames` names, two at a time.
  const churn = async (lane: number): Promise<void> => {
    let i = lane;
    while (running()) {
      const name = `churn-${String(i % churnNames).padStart(3, "0")}`;
      i += 2;
      const runtime = i % 4 < 2 ? "python" : "nodejs";
      const put = await send(
        url,
        "PUT",
        `/admin/functions/${name}`,
        JSON.stringify(fn(name, runtime, runtime === "python" ? PY_OK : NODE_OK)),
        admin,
      ).catch((err: Error) => err);
      tally.record(`deploy:${name}`, put);
      if (put instanceof Error || put.status >= 300) continue;
      tally.deploys++;
      deployed.add(name);
      for (let k = 0; k < 3; k++) await invoke(name);
      const del = await send(url, "DELETE", `/admin/functions/${name}`, undefined, admin).catch((err: Error) => err);
      tally.record(`delete:${name}`, del);
      if (!(del instanceof Error) && del.status === 200) {
        tally.deletes++;
        deployed.delete(name);
      }
    }
  };
  loops.push(churn(0), churn(1));

  // Sampling.
  const samples: Sample[] = [];
  const started = performance.now();
  const header =
    "   t (s) | RSS (MiB) | open fds | w/o clients | sockets | pipes | requests | req/s | cold starts | deploys | 5xx asked | 5xx other";
  console.log(header);
  console.log("-".repeat(header.length));
  let lastRequests = 0;
  const sampleNow = (): void => {
    if (proc.exitCode !== null) return;
    const t = Math.round((performance.now() - started) / 1000);
    const p = sampleProcess(pid, gatewayPort);
    const asked = [...tally.asked5xx.values()].reduce((a, b) => a + b, 0);
    samples.push({
      t,
      ...p,
      requests: tally.requests,
      unexpected: tally.unexpectedCount,
      deployed: deployed.size,
    });
    const rate = (tally.requests - lastRequests) / sampleS;
    lastRequests = tally.requests;
    console.log(
      `${String(t).padStart(8)} | ${p.rssMiB.toFixed(1).padStart(9)} | ${String(p.fds).padStart(8)} | ${String(p.ownFds).padStart(11)} | ${String(p.sockets).padStart(7)} | ${String(p.pipes).padStart(5)} | ${String(tally.requests).padStart(8)} | ${rate.toFixed(0).padStart(5)} | ${String(tally.cold).padStart(11)} | ${String(tally.deploys).padStart(7)} | ${String(asked).padStart(9)} | ${String(tally.unexpectedCount).padStart(9)}`,
    );
  };
  sampleNow();
  const sampler = setInterval(sampleNow, sampleS * 1000);
  await Promise.all(loops);
  clearInterval(sampler);
  sampleNow();
  const crashed = proc.exitCode !== null;

  proc.kill("SIGTERM");
  await new Promise((r) => proc.once("exit", r));
  agent.destroy();
  await rm(dataDir, { recursive: true, force: true });

  // Samples under load after warm-up (not the one taken once the load stopped).
  const after = samples.filter((s) => s.t >= warmupS && s.t <= durationS);
  // Medians of the first and the last third after warm-up: RSS is a saw-tooth (V8 grows the heap
  // until a major collection), so single samples would compare the tooth's phase, not a trend.
  const avg = (xs: Sample[], k: "rssMiB" | "ownFds") => {
    const v = xs.map((s) => s[k]).sort((a, b) => a - b);
    return v.length === 0 ? Number.NaN : ((v[(v.length - 1) >> 1] as number) + (v[v.length >> 1] as number)) / 2;
  };
  const third = Math.max(1, Math.floor(after.length / 3));
  const base = after.slice(0, third);
  const last = after.slice(-third);
  const growth = (k: "rssMiB" | "ownFds") => (avg(last, k) - avg(base, k)) / avg(base, k);
  const rssGrowth = growth("rssMiB");
  const fdGrowth = growth("ownFds");
  console.log("");
  console.log(
    `requests ${tally.requests}, cold starts ${tally.cold}, deploys ${tally.deploys}, deletes ${tally.deletes}`,
  );
  console.log(
    `statuses: ${[...tally.statuses]
      .sort((a, b) => a[0] - b[0])
      .map(([s, n]) => `${s}×${n}`)
      .join(" ")}`,
  );
  console.log(`5xx the handlers asked for: ${[...tally.asked5xx].map(([c, n]) => `${c} ${n}`).join(", ") || "none"}`);
  console.log(
    `keep-alive races retried (a reused idle connection closed by the gateway's 5 s idle timeout): ${keepAliveRaces}`,
  );
  console.log(`other 5xx or errors: ${[...tally.unexpected].map(([c, n]) => `${c}: ${n}`).join(", ") || "none"}`);
  console.log(
    `after warm-up (t ≥ ${warmupS} s; median of the first third of the samples → median of the last third, ${third} samples each): RSS ${avg(base, "rssMiB").toFixed(1)} → ${avg(last, "rssMiB").toFixed(1)} MiB (${(rssGrowth * 100).toFixed(1)} %), fds without the load generator's connections ${avg(base, "ownFds").toFixed(0)} → ${avg(last, "ownFds").toFixed(0)} (${(fdGrowth * 100).toFixed(1)} %)`,
  );
  const failures: string[] = [];
  if (crashed) failures.push("the gateway process exited");
  if (after.length < 4) failures.push(`only ${after.length} samples after warm-up; run longer`);
  if (rssGrowth > 0.1) failures.push(`RSS grew ${(rssGrowth * 100).toFixed(1)} % > 10 %`);
  if (fdGrowth > 0.1) failures.push(`open fds grew ${(fdGrowth * 100).toFixed(1)} % > 10 %`);
  if (tally.unexpectedCount > 0)
    failures.push(`${tally.unexpectedCount} responses were 5xx or errors nobody asked for`);
  console.log(failures.length === 0 ? "soak: PASS" : `soak: FAIL — ${failures.join("; ")}`);
  return failures.length === 0 ? 0 : 1;
}

process.exit(await main());
