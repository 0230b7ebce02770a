/**
 * The real servers the fuzz suites aim at, each in its own process so that a
 * crash shows as an exit: a `faas up` gateway (local backend, real Python and
 * Node.js runners behind it), and each runner alone, specialized with an echo
 * function.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import {
  type FuzzProfile,
  type FuzzRequest,
  type FuzzStats,
  isFailure,
  normalRequest,
  type Outcome,
  sendRaw,
} from "./fuzz.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

export type TargetName = "gateway" | "python" | "node";

export interface FuzzTarget {
  name: TargetName;
  port: number;
  pid: number;
  profile: FuzzProfile;
  /** A path the healthy target answers 200. */
  normalPath: string;
  alive(): boolean;
  /** What the process wrote to stderr lately (for a failure report). */
  stderr(): string;
  stop(): Promise<void>;
}

const PY_ECHO = `def handle(req):
    return {"method": req.method, "path": req.path, "query": req.query, "bytes": len(req.body)}
`;
const NODE_ECHO = `export async function handle(req) {
  const body = await req.arrayBuffer();
  return { method: req.method, url: req.url, bytes: body.byteLength };
}
`;

function track(proc: ChildProcess): { alive(): boolean; exited: Promise<void>; stderr(): string } {
  let err = "";
  proc.stderr?.on("data", (c: Buffer) => {
    err = (err + c.toString()).slice(-8000);
  });
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  return { alive: () => proc.exitCode === null && proc.signalCode === null, exited, stderr: () => err };
}

async function stopProcess(proc: ChildProcess, exited: Promise<void>): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill("SIGTERM");
  const killer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(killer);
}

/** `faas up` on a free port with a Python and a Node.js echo function kept warm. */
export async function startGatewayTarget(): Promise<FuzzTarget> {
  const dataDir = await mkdtemp(join(tmpdir(), "faas-fuzz-"));
  const manifest = (name: string, runtime: string, code: string) =>
    JSON.stringify({
      apiVersion: "faas.example.com/v1",
      kind: "Function",
      metadata: { name },
      spec: { runtime, code, minReplicas: 1, maxReplicas: 2, concurrency: 50, timeoutSeconds: 10 },
    });
  const file = join(dataDir, "functions.yaml");
  await writeFile(file, `${manifest("echo", "python", PY_ECHO)}\n---\n${manifest("echo-node", "nodejs", NODE_ECHO)}\n`);
  const env: NodeJS.ProcessEnv = { ...process.env, FAAS_DATA_DIR: dataDir, NO_COLOR: "1" };
  for (const key of ["FAAS_GATEWAY", "FAAS_ADMIN_TOKEN", "FAAS_GATEWAY_PORT", "FAAS_LOG_LEVEL", "FORCE_COLOR"]) {
    delete env[key];
  }
  const proc = spawn(
    process.execPath,
    [join(ROOT, "packages/cli/dist/main.js"), "up", "--port", "0", "--pool-size", "1", "-f", file],
    { env, stdio: ["ignore", "ignore", "pipe"] },
  );
  const t = track(proc);
  const stateFile = join(dataDir, "gateway.json");
  let state: { url: string; token: string };
  try {
    const deadline = Date.now() + 30_000;
    while (!existsSync(stateFile)) {
      if (!t.alive()) throw new Error(`faas up exited: ${t.stderr()}`);
      if (Date.now() > deadline) throw new Error(`no ${stateFile} after 30 s: ${t.stderr()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    state = JSON.parse(await readFile(stateFile, "utf8")) as { url: string; token: string };
  } catch (err) {
    // No target to hand back, so nobody else would stop it: the platform must not outlive the test.
    await stopProcess(proc, t.exited);
    throw err;
  }
  const port = Number(new URL(state.url).port);
  const target: FuzzTarget = {
    name: "gateway",
    port,
    pid: proc.pid as number,
    normalPath: "/invoke/echo",
    profile: {
      paths: [
        "/invoke/echo",
        "/invoke/echo/",
        "/invoke/echo-node/x",
        "/invoke/nope",
        "/invoke/",
        "/admin/functions",
        "/admin/functions/z-fuzz",
        "/admin/functions/z-fuzz/logs",
        "/admin/secrets",
        "/admin/secrets/z-fuzz",
        "/admin/configs/z-fuzz",
        "/healthz",
        "/readyz",
        "/metrics",
      ],
      adminToken: state.token,
    },
    alive: t.alive,
    stderr: t.stderr,
    async stop() {
      await stopProcess(proc, t.exited);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
  try {
    // Both functions warm before the first fuzz case.
    for (const path of ["/invoke/echo", "/invoke/echo-node"]) await expectOk(target, path);
  } catch (err) {
    await target.stop();
    throw err;
  }
  return target;
}

/** One runner process alone, specialized with an echo function. */
export async function startRunnerTarget(runtime: "python" | "node"): Promise<FuzzTarget> {
  const [cmd, args, cwd] =
    runtime === "python"
      ? ["python3", ["-m", "faas_runner"], join(ROOT, "packages/runner-python")]
      : [process.execPath, [join(ROOT, "packages/runner-node/dist/main.js")], ROOT];
  const proc = spawn(cmd, args, {
    cwd,
    env: { ...process.env, FAAS_PORT: "0", FAAS_HOST: "127.0.0.1", FAAS_PARENT_PID: String(process.pid) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const t = track(proc);
  const port = await new Promise<number>((resolve, reject) => {
    proc.once("exit", (code) => reject(new Error(`${runtime} runner exited (${code}): ${t.stderr()}`)));
    createInterface({ input: proc.stdout! }).on("line", (line) => {
      if (line.includes('"listening"')) resolve((JSON.parse(line) as { port: number }).port);
    });
  });
  const spec = { name: "echo", handler: "main.handle", code: runtime === "python" ? PY_ECHO : NODE_ECHO };
  const status = await post(port, "/specialize", JSON.stringify(spec)).catch(() => 0);
  if (status !== 200) {
    await stopProcess(proc, t.exited);
    throw new Error(`specialize answered ${status}: ${t.stderr()}`);
  }
  return {
    name: runtime,
    port,
    pid: proc.pid as number,
    normalPath: "/invoke/x?y=1",
    profile: { paths: ["/invoke", "/invoke/", "/invoke/x", "/healthz", "/readyz", "/specialize", "/nope"] },
    alive: t.alive,
    stderr: t.stderr,
    stop: () => stopProcess(proc, t.exited),
  };
}

export function startTarget(name: TargetName): Promise<FuzzTarget> {
  return name === "gateway" ? startGatewayTarget() : startRunnerTarget(name);
}

function post(port: number, path: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method: "POST", agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end(body);
  });
}

async function expectOk(target: FuzzTarget, path: string): Promise<void> {
  const o = await sendRaw(target.port, normalRequest(path), 30_000);
  if (o.kind !== "response" || o.statuses[0] !== 200) {
    throw new Error(`${target.name}: GET ${path} → ${JSON.stringify(o)}`);
  }
}

export interface CaseResult {
  outcome: Outcome;
  /** The normal request sent right after, or undefined if it was answered 200. */
  followUp?: Outcome;
  alive: boolean;
}

/**
 * The property for one request: a well-formed answer or a clean close, the
 * process still up, and a normal request right after answered 200.
 */
export async function fuzzCase(target: FuzzTarget, req: FuzzRequest, stats?: FuzzStats): Promise<CaseResult> {
  const outcome = await sendRaw(target.port, req);
  stats?.record(req, outcome);
  const next = await sendRaw(target.port, normalRequest(target.normalPath), 10_000);
  const ok = next.kind === "response" && next.statuses.length === 1 && next.statuses[0] === 200;
  return { outcome, alive: target.alive(), ...(ok ? {} : { followUp: next }) };
}

export function caseFailed(r: CaseResult): boolean {
  return isFailure(r.outcome) || r.followUp !== undefined || !r.alive;
}
