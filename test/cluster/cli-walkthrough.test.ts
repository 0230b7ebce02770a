/**
 * The README's Kubernetes walkthrough with the `faas` CLI alone once the
 * platform is installed: deploy (waits until ready), invoke (through the CLI's
 * own port-forward), list, logs (-f included), delete — the same output and
 * exit codes as local mode. Then `faas port-forward` outliving a gateway
 * rollout, which `kubectl port-forward svc/faas-gateway` does not.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI_MAIN, cliEnv, faas as faasIn, type Run } from "../support/cli.js";
import { kubeconfigPath, kubectl, repoRoot, waitFor } from "./fixture.js";
import {
  deleteFunction,
  installCrdAndGateway,
  type LocalOperator,
  startLocalOperator,
  systemPodObjects,
  waitForPool,
} from "./support/platform.js";

const NS = "default";
const FUNCTIONS = ["hello", "talk", "broken"];
const dataDir = mkdtempSync(join(tmpdir(), "faas-cli-cluster-"));
const CLUSTER = ["--kubeconfig", kubeconfigPath, "--context", "faas"];

/** `faas --kubeconfig … --context faas <args>`. */
function faas(...args: string[]): Promise<Run> {
  return faasIn(dataDir, [...CLUSTER, ...args]);
}

/** A long-running `faas` (logs -f, port-forward) whose output can be awaited line by line. */
function start(args: string[]): {
  proc: ChildProcess;
  out: () => string;
  err: () => string;
  exited: Promise<number | null>;
} {
  const proc = spawn(process.execPath, [CLI_MAIN, ...CLUSTER, ...args], {
    env: cliEnv(dataDir),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  proc.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  proc.stderr?.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
  return { proc, out: () => out, err: () => err, exited };
}

async function coldStartsOf(name: string): Promise<number> {
  const items = JSON.parse((await faas("list", "--json")).stdout) as { name: string; coldStarts: number | null }[];
  const item = items.find((f) => f.name === name);
  expect(item?.coldStarts, `gateway figures for ${name}`).toBeTypeOf("number");
  return item?.coldStarts as number;
}

/** One GET on a new connection each time, so every call goes through the forward afresh. */
function freshGet(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (d: string) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", reject);
    });
    req.setTimeout(10_000, () => req.destroy(new Error(`no answer for ${path}`)));
    req.on("error", reject);
    req.end();
  });
}

/** Every gateway pod, terminating ones included. */
async function allGatewayPods(): Promise<string[]> {
  return (await systemPodObjects("faas-gateway")).map((p) => p.metadata.name);
}

describe("the walkthrough with the faas CLI on a cluster", () => {
  let operator: LocalOperator;

  beforeAll(async () => {
    // The install, as the README does it (kubectl apply crd.yaml, gateway-deploy.yaml; the operator).
    await installCrdAndGateway();
    for (const fn of FUNCTIONS) await deleteFunction(NS, fn);
    operator = await startLocalOperator(NS);
  });
  afterAll(async () => {
    for (const fn of FUNCTIONS) await deleteFunction(NS, fn).catch(() => {});
    await operator?.stop();
  });

  it("deploy, invoke, list, logs, delete: local mode's output and exit codes", async () => {
    const t0 = performance.now();
    const deployed = await faas("deploy", "-f", join(repoRoot, "function-hello.yaml"));
    const deployMs = performance.now() - t0;
    // Progress goes to stderr (one line per new state without a terminal), the result to stdout.
    for (const line of deployed.stderr.split("\n").filter(Boolean)) expect(line).toMatch(/^hello: /);
    expect(deployed).toMatchObject({
      code: 0,
      stdout: "created hello  http://faas-gateway.faas-system:8000/invoke/hello\n",
    });
    // Applying the same file again changes nothing and says so the local way.
    expect((await faas("deploy", "-f", join(repoRoot, "function-hello.yaml"))).stdout).toMatch(/^updated hello {2}/);

    // The gateways count cold starts since they started, earlier functions named hello included.
    const coldStartsBefore = await coldStartsOf("hello");
    // Scaled to zero: no pod to follow yet; the ones the first call brings are picked up as they come.
    const follow = start(["logs", "hello", "-f"]);
    await waitForPool(NS, "python", 1);
    const t1 = performance.now();
    const cold = await faas("invoke", "hello", "-i");
    const coldMs = performance.now() - t1;
    expect(cold.code).toBe(0);
    expect(cold.stdout).toMatch(/^HTTP\/1\.1 200\n/);
    expect(cold.stdout).toMatch(/\nx-faas-cold-start: true\n/);
    expect(cold.stdout.endsWith("\n\nhello from runner")).toBe(true);
    expect(cold.stderr).toMatch(/^cold start: parked [\d.]+ ms, claim [\d.]+ ms, specialize [\d.]+ ms\n$/);
    const t2 = performance.now();
    const warm = await faas("invoke", "hello");
    const warmMs = performance.now() - t2;
    expect(warm).toEqual({ code: 0, stdout: "hello from runner", stderr: "" });

    const listed = await faas("list");
    expect(listed.code).toBe(0);
    const [header, row, ...rest] = listed.stdout.trimEnd().split("\n");
    expect(header).toMatch(/^NAME\s+RUNTIME\s+READY\s+MIN\/MAX\s+STATUS\s+COLD-STARTS\s+P50\s+AUTH\s+URL$/);
    expect(rest).toEqual([]);
    expect(row).toMatch(
      /^hello\s+python\s+[01]\/1\s+0\/3\s+(Available|Pending)\s+\d+\s+[\d.]+ms\s+none\s+http:\/\/faas-gateway\.faas-system:8000\/invoke\/hello$/,
    );
    expect(await coldStartsOf("hello")).toBe(coldStartsBefore + 1);

    // The claimed pool pod served the cold call; the Deployment's pod takes over: both are the function's.
    const logs = await waitFor(
      "hello's own pod in faas logs",
      async () => {
        const r = await faas("logs", "hello");
        return /\[fn-hello-deploy-[a-z0-9-]+\] .*"event":"specialized"/.test(r.stdout) ? r : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 1000 },
    );
    expect(logs.code).toBe(0);
    for (const line of logs.stdout.trimEnd().split("\n")) {
      expect(line).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z \[(fn-hello-deploy|faas-pool-python)-[a-z0-9-]+\] /);
    }

    const followed = await waitFor(
      "logs -f to pick up the pods that came",
      async () => {
        const out = follow.out();
        return /\[faas-pool-python-[a-z0-9-]+\] .*"specialized".*"function":"hello"/.test(out) &&
          /\[fn-hello-deploy-[a-z0-9-]+\] /.test(out)
          ? out
          : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    );
    follow.proc.kill("SIGINT");
    expect(await follow.exited).toBe(130);
    expect(follow.err()).toMatch(/^$|no pods/);
    const podsFollowed = new Set([...followed.matchAll(/\[([a-z0-9-]+)\] /g)].map((m) => m[1]));

    const missing = await faas("invoke", "nosuch");
    expect(missing.code).toBe(4);
    expect(missing.stderr).toMatch(/^error: nosuch: no function named "nosuch"/);
    expect((await faas("logs", "nosuch")).code).toBe(4);

    const deleted = await faas("delete", "hello");
    expect(deleted).toMatchObject({ code: 0, stdout: "deleted hello\n" });
    expect((await faas("delete", "hello")).code).toBe(4);
    expect((await faas("invoke", "hello")).code).toBe(4);
    expect((await faas("list")).stdout).toBe(
      "no functions in context faas, namespace default; deploy one with `faas deploy -f FILE`\n",
    );
    console.log(
      `cli walkthrough: deploy ${deployMs.toFixed(0)} ms, cold invoke ${coldMs.toFixed(0)} ms (process start, forward and call; ${cold.stderr.trim()}), warm invoke ${warmMs.toFixed(0)} ms; logs -f picked up ${[...podsFollowed].join(", ")}`,
    );
  });

  it("deploy from flags waits for the pods; logs -f prints each pod's new lines, prefixed", async () => {
    const code = join(dataDir, "talk.py");
    writeFileSync(code, 'def handle(req):\n    print("called with", req.text, flush=True)\n    return "ok"\n');
    const t0 = performance.now();
    const deployed = await faas(
      "deploy",
      "--name",
      "talk",
      "--runtime",
      "python",
      "--code",
      code,
      "--min",
      "2",
      "--max",
      "2",
    );
    const deployMs = performance.now() - t0;
    expect(deployed).toMatchObject({
      code: 0,
      stdout: "created talk  http://faas-gateway.faas-system:8000/invoke/talk\n",
    });
    const listed = await faas("list");
    expect(listed.stdout).toMatch(/\ntalk\s+python\s+2\/2\s+2\/2\s+Available\s+0\s+-\s+none\s+http/);

    const follow = start(["logs", "talk", "-f", "--tail", "0"]);
    try {
      await new Promise((r) => setTimeout(r, 2000));
      for (let i = 1; i <= 6; i++) expect((await faas("invoke", "talk", "-d", `ping-${i}`)).stdout).toBe("ok");
      const lines = await waitFor(
        "the six calls in logs -f",
        async () => {
          const got = follow
            .out()
            .split("\n")
            .filter((l) => l.includes("called with ping-"));
          return got.length === 6 ? got : undefined;
        },
        { timeoutMs: 30_000, intervalMs: 250 },
      );
      const pods = new Set(lines.map((l) => /\[(fn-talk-deploy-[a-z0-9-]+)\] called with ping-\d$/.exec(l)?.[1]));
      expect(pods.has(undefined)).toBe(false);
      console.log(
        `logs -f: 6 calls → ${lines.length} lines from ${pods.size} pod(s); deploy --min 2 took ${deployMs.toFixed(0)} ms`,
      );
    } finally {
      follow.proc.kill("SIGINT");
    }
    expect(await follow.exited).toBe(130);
    expect((await faas("delete", "talk")).code).toBe(0);
  });

  it("deploy fails with exit 2 and the operator's message when the code cannot load", async () => {
    const code = join(dataDir, "broken.py");
    writeFileSync(code, "import no_such_module\ndef handle(req):\n    return 'never'\n");
    const t0 = performance.now();
    const r = await faas("deploy", "--name", "broken", "--runtime", "python", "--code", code, "--min", "1");
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/^error: deploy broken: CrashLoop: pod fn-broken-deploy-/m);
    expect(r.stderr).toMatch(/hint: `faas logs broken --context faas`/);
    const error = r.stderr.split("\n").find((l) => l.startsWith("error:"));
    console.log(`failed deploy: exit 2 after ${((performance.now() - t0) / 1000).toFixed(1)} s: ${error}`);
    const logs = await faas("logs", "broken");
    expect(logs.stdout).toMatch(/\[fn-broken-deploy-[a-z0-9-]+\] .*no_such_module/);
    expect((await faas("delete", "broken")).code).toBe(0);
  });

  it("faas port-forward outlives a gateway rollout", async () => {
    const hello = await faas("deploy", "-f", join(repoRoot, "function-hello.yaml"));
    expect(hello.code).toBe(0);
    // stress reaches the gateway the way invoke does.
    const load = await faas("stress", "hello", "--duration", "3s", "-c", "4", "--max-errors", "0", "--json");
    expect(load.code).toBe(0);
    const summary = JSON.parse(load.stdout) as { requests: number; rps: number; statuses: Record<string, number> };
    expect(Object.keys(summary.statuses)).toEqual(["200"]);
    expect(summary.requests).toBeGreaterThan(10);
    console.log(
      `stress through the CLI's forward: ${summary.requests} requests, ${summary.rps.toFixed(0)} req/s, all 200`,
    );
    const pf = start(["port-forward", "--port", "0"]);
    try {
      const port = Number(
        await waitFor("the forward's port", async () => /127\.0\.0\.1:(\d+)/.exec(pf.out())?.[1], { intervalMs: 100 }),
      );
      expect((await freshGet(port, "/invoke/hello")).body).toBe("hello from runner");
      const before = await allGatewayPods();
      const t0 = performance.now();
      await kubectl(["-n", "faas-system", "rollout", "restart", "deployment/faas-gateway"]);
      let served = 0;
      let failed = 0;
      // Keep calling through the same forward until every gateway pod it knew is gone.
      for (;;) {
        const r = await freshGet(port, "/invoke/hello").catch(() => undefined);
        if (r?.status === 200) served++;
        else failed++;
        const now = await allGatewayPods();
        if (now.every((p) => !before.includes(p))) break;
        expect(performance.now() - t0).toBeLessThan(240_000);
        await new Promise((r) => setTimeout(r, 500));
      }
      await kubectl(["-n", "faas-system", "rollout", "status", "deployment/faas-gateway", "--timeout=120s"], {
        timeoutMs: 130_000,
      });
      const after = await freshGet(port, "/invoke/hello");
      expect(after.status).toBe(200);
      expect(after.body).toBe("hello from runner");
      expect(pf.proc.exitCode).toBeNull();
      const podsUsed = pf.err().match(/forwarding to pod \S+/g) ?? [];
      expect(podsUsed.length).toBeGreaterThanOrEqual(2);
      console.log(
        `port-forward across a gateway rollout: ${served} calls served, ${failed} failed during it, ${((performance.now() - t0) / 1000).toFixed(1)} s; pods used: ${podsUsed.map((p) => p.slice(18)).join(", ")}`,
      );
    } finally {
      pf.proc.kill("SIGINT");
    }
    expect(await pf.exited).toBe(0);
  });
});
