/**
 * The `faas` CLI end to end: the built binary as real child processes against
 * a real `faas up` (gateway, local backend, Python and Node.js runners).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const MAIN = join(ROOT, "packages/cli/dist/main.js");

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface Up {
  proc: ChildProcess;
  dataDir: string;
  url: string;
  exited: Promise<number | null>;
  stderr: () => string;
}

const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

beforeAll(() => {
  execFileSync("npx", ["tsc", "-b", "packages/cli"], { cwd: ROOT, stdio: "inherit" });
});

/** The CLI's environment: nothing from the caller that could point it elsewhere. */
function cliEnv(dataDir: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, FAAS_DATA_DIR: dataDir, NO_COLOR: "1" };
  for (const key of ["FAAS_GATEWAY", "FAAS_ADMIN_TOKEN", "FAAS_GATEWAY_PORT", "FAAS_LOG_LEVEL", "FORCE_COLOR"]) {
    delete env[key];
  }
  return env;
}

function faas(dataDir: string, args: string[], input?: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [MAIN, ...args], { env: cliEnv(dataDir), stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    proc.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    proc.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    proc.once("error", reject);
    proc.once("close", (code) => resolve({ code, stdout, stderr }));
    proc.stdin.end(input);
  });
}

async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function startUp(args: string[]): Promise<Up> {
  const dataDir = await tempDir("faas-cli-data-");
  const proc = spawn(process.execPath, [MAIN, "up", "--port", "0", "--pool-size", "1", ...args], {
    env: cliEnv(dataDir),
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  cleanups.push(async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
    await exited;
  });
  let stderr = "";
  proc.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  proc.stdout?.resume();
  const stateFile = join(dataDir, "gateway.json");
  const deadline = Date.now() + 25_000;
  while (!existsSync(stateFile)) {
    if (proc.exitCode !== null) throw new Error(`faas up exited with ${proc.exitCode}: ${stderr}`);
    if (Date.now() > deadline) throw new Error(`no ${stateFile} after 25 s: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const { url } = JSON.parse(await readFile(stateFile, "utf8")) as { url: string };
  return { proc, dataDir, url, exited, stderr: () => stderr };
}

/** Direct children of `pid`, read from /proc (independent of the CLI's own helper). */
function childrenOf(pid: number): number[] {
  return readdirSync("/proc")
    .filter((e) => /^\d+$/.test(e))
    .filter((e) => {
      try {
        const stat = readFileSync(`/proc/${e}/stat`, "utf8");
        return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === pid;
      } catch {
        return false;
      }
    })
    .map(Number);
}

function alive(pid: number): boolean {
  try {
    const state = readFileSync(`/proc/${pid}/stat`, "utf8");
    return state.slice(state.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

const ECHO_PY = `
import time
from faas import Response

def handle(req):
    if "say" in req.query:
        print("handler says", req.query["say"])
    if "fail" in req.query:
        raise ValueError("kaboom")
    if "sleep" in req.query:
        time.sleep(float(req.query["sleep"]))
    return Response(
        {"method": req.method, "path": req.path, "query": req.query, "body": req.text, "trace": req.headers.get("x-trace")},
        headers={"x-echo": "yes"},
    )
`;

const MANIFESTS = `
apiVersion: faas.example.com/v1
kind: Function
metadata:
  name: echo
spec:
  runtime: python
  handler: echo.handle
  codeFile: echo.py
---
apiVersion: faas.example.com/v1
kind: Function
metadata:
  name: steady
spec:
  runtime: python
  minReplicas: 1
  maxReplicas: 2
  code: |
    def handle(req):
        return "steady"
`;

const NODE_YAML = `
apiVersion: faas.example.com/v1
kind: Function
metadata:
  name: hi-node
spec:
  runtime: nodejs
  code: |
    export function handle(req) {
      return new Response("hi from node " + new URL(req.url).searchParams.get("who"));
    }
`;

describe("faas CLI against a running `faas up`", () => {
  let up: Up;
  let work: string;

  beforeAll(async () => {
    work = await tempDir("faas-cli-work-");
    await writeFile(join(work, "echo.py"), ECHO_PY);
    await writeFile(join(work, "functions.yaml"), MANIFESTS);
    up = await startUp(["-f", join(work, "functions.yaml")]);
  });

  it("serves the -f manifests, not the examples", async () => {
    const run = await faas(up.dataDir, ["list", "--json"]);
    expect(run.code).toBe(0);
    const names = (JSON.parse(run.stdout) as { name: string }[]).map((f) => f.name);
    expect(names).toEqual(["echo", "steady"]);
  });

  it("invoke sends body, headers, method and sub-path and prints the body", async () => {
    const run = await faas(up.dataDir, [
      "invoke",
      "echo",
      "-d",
      "ping",
      "-H",
      "X-Trace: abc123",
      "-X",
      "PUT",
      "--path",
      "/sub/path?q=1",
    ]);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({
      method: "PUT",
      path: "/sub/path",
      query: { q: "1" },
      body: "ping",
      trace: "abc123",
    });
  });

  it("invoke reads the body from stdin with -d @- and shows headers with -i", async () => {
    const run = await faas(up.dataDir, ["invoke", "echo", "-d", "@-", "-i"], "from stdin");
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^HTTP\/1\.1 200\n/);
    expect(run.stdout).toContain("x-echo: yes");
    const body = run.stdout.slice(run.stdout.indexOf("\n\n") + 2);
    expect(JSON.parse(body)).toMatchObject({ method: "POST", body: "from stdin" });
  });

  it("invoke --json reports status, headers, parsed body and the cold start", async () => {
    const run = await faas(up.dataDir, ["invoke", "echo", "--json", "--path", "?x=2"]);
    expect(run.code).toBe(0);
    const out = JSON.parse(run.stdout) as {
      status: number;
      headers: Record<string, string>;
      body: { query: Record<string, string> };
      coldStart: boolean;
    };
    expect(out.status).toBe(200);
    expect(out.headers["x-echo"]).toBe("yes");
    expect(out.body.query).toEqual({ x: "2" });
    expect(typeof out.coldStart).toBe("boolean");
  });

  it("invoke exits 1 and prints the handler's error when it throws (HTTP 500)", async () => {
    const run = await faas(up.dataDir, ["invoke", "echo", "--path", "?fail=1"]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^error: .*kaboom.*HTTP 500/m);
    const json = await faas(up.dataDir, ["invoke", "echo", "--json", "--path", "?fail=1"]);
    expect(json.code).toBe(1);
    expect((JSON.parse(json.stdout) as { status: number }).status).toBe(500);
  });

  it("invoke exits 4 for an unknown function", async () => {
    const run = await faas(up.dataDir, ["invoke", "no-such-fn"]);
    expect(run.code).toBe(4);
    expect(run.stderr).toContain('no function named "no-such-fn"');
    expect(run.stdout).toBe("");
  });

  it("deploy -f creates a function from YAML, then reports updated", async () => {
    const file = join(work, "hi-node.yaml");
    await writeFile(file, NODE_YAML);
    const first = await faas(up.dataDir, ["deploy", "-f", file]);
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/^created hi-node\s+http:\/\/127\.0\.0\.1:\d+\/invoke\/hi-node$/m);
    const again = await faas(up.dataDir, ["deploy", "-f", file]);
    expect(again.stdout).toMatch(/^updated hi-node/m);
    // min 0, never called: the first call is cold, and -i shows where the time went.
    const cold = await faas(up.dataDir, ["invoke", "hi-node", "-i", "--path", "?who=ada"]);
    expect(cold.code).toBe(0);
    expect(cold.stdout).toContain("x-faas-cold-start: true");
    expect(cold.stdout.endsWith("\n\nhi from node ada")).toBe(true);
    expect(cold.stderr).toMatch(
      /^cold start: parked [\d.]+ ms, scaleup [\d.]+ ms, specialize [\d.]+ ms, import [\d.]+ ms$/m,
    );
    // Warm, without -i and without a TTY: only the body, nothing on stderr.
    const warm = await faas(up.dataDir, ["invoke", "hi-node", "--path", "?who=bob"]);
    expect(warm.code).toBe(0);
    expect(warm.stdout).toBe("hi from node bob");
    expect(warm.stderr).toBe("");
  });

  it("deploy with flags builds the spec (code file, handler, min, env)", async () => {
    const code = join(work, "greet.py");
    await writeFile(
      code,
      'import os\n\ndef hello(req):\n    return os.environ["GREETING"] + " " + req.query.get("who", "")\n',
    );
    const run = await faas(up.dataDir, [
      "deploy",
      "--name",
      "greet",
      "--runtime",
      "python",
      "--code",
      code,
      "--handler",
      "greet.hello",
      "--min",
      "1",
      "--max",
      "2",
      "--env",
      "GREETING=hey",
    ]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^created greet/m);
    const call = await faas(up.dataDir, ["invoke", "greet", "--path", "?who=bob"]);
    expect(call.stdout).toBe("hey bob");
    const list = JSON.parse((await faas(up.dataDir, ["list", "--json"])).stdout) as {
      name: string;
      minReplicas: number;
      maxReplicas: number;
    }[];
    expect(list.find((f) => f.name === "greet")).toMatchObject({ minReplicas: 1, maxReplicas: 2 });
  });

  it("list --json shows ready/desired replicas: min 1 kept warm, a called function scaled up", async () => {
    await faas(up.dataDir, ["invoke", "echo"]);
    const run = await faas(up.dataDir, ["list", "--json"]);
    expect(run.code).toBe(0);
    const items = JSON.parse(run.stdout) as {
      name: string;
      runtime: string;
      readyReplicas: number;
      desiredReplicas: number;
      coldStarts: number;
      url: string;
    }[];
    const steady = items.find((f) => f.name === "steady");
    const echo = items.find((f) => f.name === "echo");
    expect(steady).toMatchObject({ runtime: "python", readyReplicas: 1, desiredReplicas: 1 });
    expect(echo?.readyReplicas).toBeGreaterThanOrEqual(1);
    expect(echo?.coldStarts).toBeGreaterThanOrEqual(1);
    expect(echo?.url).toBe(`${up.url}/invoke/echo`);
  });

  it("list prints a table with the replica counts", async () => {
    const run = await faas(up.dataDir, ["list"]);
    expect(run.code).toBe(0);
    const lines = run.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^NAME\s+RUNTIME\s+READY\s+MIN\/MAX\s+COLD-STARTS\s+P50\s+AUTH\s+URL$/);
    expect(lines.find((l) => l.startsWith("steady "))).toMatch(/^steady\s+python\s+1\/1\s+1\/2\s/);
  });

  it("logs shows what a handler printed", async () => {
    const marker = `marker-${Date.now()}`;
    expect((await faas(up.dataDir, ["invoke", "echo", "--path", `?say=${marker}`])).code).toBe(0);
    let run: Run = { code: null, stdout: "", stderr: "" };
    for (let i = 0; i < 40 && !run.stdout.includes(marker); i++) {
      run = await faas(up.dataDir, ["logs", "echo", "--tail", "50"]);
      if (!run.stdout.includes(marker)) await new Promise((r) => setTimeout(r, 100));
    }
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`handler says ${marker}`);
  });

  it("logs -f streams new lines as they are printed", async () => {
    const marker = `live-${Date.now()}`;
    const proc = spawn(process.execPath, [MAIN, "logs", "echo", "-f", "--tail", "0"], {
      env: cliEnv(up.dataDir),
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
    cleanups.push(async () => {
      if (proc.exitCode === null) proc.kill("SIGKILL");
      await exited;
    });
    let out = "";
    proc.stdout.on("data", (d: Buffer) => (out += d.toString()));
    // --tail 0 shows no history: the marker can only arrive through the live stream. Keep
    // printing it until the follower (a process still starting on a busy machine) sees it.
    for (let i = 0; i < 30 && !out.includes(marker); i++) {
      await faas(up.dataDir, ["invoke", "echo", "--path", `?say=${marker}`]);
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(out).toContain(`handler says ${marker}`);
    proc.kill("SIGINT");
    expect(await exited).toBe(130);
  });

  it("delete removes a function; a second delete exits 4", async () => {
    const code = join(work, "tmp.py");
    await writeFile(code, "def handle(req):\n    return 'bye'\n");
    await faas(up.dataDir, [
      "deploy",
      "--name",
      "doomed",
      "--runtime",
      "python",
      "--code",
      code,
      "--handler",
      "tmp.handle",
    ]);
    const run = await faas(up.dataDir, ["delete", "doomed"]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^deleted doomed$/m);
    const names = (JSON.parse((await faas(up.dataDir, ["list", "--json"])).stdout) as { name: string }[]).map(
      (f) => f.name,
    );
    expect(names).not.toContain("doomed");
    expect((await faas(up.dataDir, ["invoke", "doomed"])).code).toBe(4);
    expect((await faas(up.dataDir, ["delete", "doomed"])).code).toBe(4);
  });

  it("a second `up` on a port in use exits 3 and says what to do", async () => {
    const other = await tempDir("faas-cli-other-");
    const port = new URL(up.url).port;
    const run = await new Promise<Run>((resolve) => {
      const proc = spawn(process.execPath, [MAIN, "up", "--port", port, "--no-examples"], {
        env: cliEnv(other),
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stderr = "";
      proc.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      proc.once("close", (code) => resolve({ code, stdout: "", stderr }));
    });
    expect(run.code).toBe(3);
    expect(run.stderr).toContain(`port ${port} on 127.0.0.1 is already in use`);
    expect(run.stderr).toMatch(/hint: .*--port/);
  });
});

describe("faas CLI without a gateway", () => {
  it("deploy of an invalid spec exits 2 and names every wrong field, before contacting anything", async () => {
    const dir = await tempDir("faas-cli-bad-");
    const file = join(dir, "bad.yaml");
    await writeFile(
      file,
      "apiVersion: faas.example.com/v1\nkind: Function\nmetadata:\n  name: Bad_Name\nspec:\n  runtime: ruby\n  code: x\n  maxReplicas: 0\n",
    );
    const run = await faas(dir, ["deploy", "-f", file]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^error: invalid Function in .*bad\.yaml/m);
    expect(run.stderr).toMatch(/^\s+metadata\.name: must be lowercase/m);
    expect(run.stderr).toMatch(/^\s+spec\.runtime: must be one of "python", "nodejs"/m);
    expect(run.stderr).toMatch(/^\s+spec\.maxReplicas: /m);
  });

  it("deploy with flags names the flag and the field of a bad value (exit 2)", async () => {
    const dir = await tempDir("faas-cli-bad-");
    const code = join(dir, "f.py");
    await writeFile(code, "def handle(req):\n    return 'x'\n");
    const run = await faas(dir, [
      "deploy",
      "--name",
      "ok",
      "--runtime",
      "python",
      "--code",
      code,
      "--min",
      "3",
      "--max",
      "1",
    ]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("--max (spec.maxReplicas): must be >= spec.minReplicas");
    const usage = await faas(dir, ["deploy", "--name", "ok", "--runtime", "cobol", "--code", code]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("--runtime");
  });

  it("commands exit 3 with a hint to start the platform when no gateway runs", async () => {
    const dir = await tempDir("faas-cli-none-");
    const list = await faas(dir, ["list"]);
    expect(list.code).toBe(3);
    expect(list.stderr).toMatch(/^error: no running gateway found/m);
    expect(list.stderr).toMatch(/^hint: .*npm start.*faas up/m);
    const invoke = await faas(dir, ["invoke", "hello", "--gateway", "http://127.0.0.1:1"]);
    expect(invoke.code).toBe(3);
    expect(invoke.stderr).toContain("cannot reach the gateway at http://127.0.0.1:1");
  });

  it("--help teaches with examples and documents the exit codes", async () => {
    const run = await faas(tmpdir(), ["--help"]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("Exit codes:");
    expect(run.stdout).toMatch(/^\s+4\s+no such function$/m);
    const invoke = await faas(tmpdir(), ["invoke", "--help"]);
    expect(invoke.stdout).toContain('faas invoke echo -d \'{"name":"ada"}\'');
  });
});

describe("faas up lifecycle", () => {
  it("SIGTERM lets an in-flight request finish, exits 0 and leaves no runner behind", async () => {
    const dir = await tempDir("faas-cli-life-");
    await writeFile(join(dir, "echo.py"), ECHO_PY);
    await writeFile(join(dir, "functions.yaml"), MANIFESTS);
    const up = await startUp(["-f", join(dir, "functions.yaml")]);
    // Warm echo, so the slow call below is in flight on a replica when SIGTERM lands.
    expect((await fetch(`${up.url}/invoke/echo`)).status).toBe(200);
    const runners = childrenOf(up.proc.pid as number);
    // steady (min 1) + echo + one idle pooled runner per runtime.
    expect(runners.length).toBeGreaterThanOrEqual(3);

    const slow = fetch(`${up.url}/invoke/echo?sleep=1`).then(async (r) => ({ status: r.status, body: await r.text() }));
    await new Promise((r) => setTimeout(r, 300));
    up.proc.kill("SIGTERM");

    const answered = await slow;
    expect(answered.status).toBe(200);
    expect(JSON.parse(answered.body)).toMatchObject({ query: { sleep: "1" } });
    expect(await up.exited).toBe(0);
    expect(runners.filter(alive)).toEqual([]);
    expect(existsSync(join(up.dataDir, "gateway.json"))).toBe(false);
  });
});
