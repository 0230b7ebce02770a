/**
 * `npm run bench:k8s`: cold starts on the project's cluster, measured from the
 * host through the gateway Service's ClusterIP (kube-proxy, no port-forward),
 * on a fresh connection, for a fresh function each time: first with the warm
 * pool (a claimed pool pod is specialized), then with the pool off (the
 * Deployment goes 0 → 1). Prints p50/p95/p99 and the server-timing medians of
 * each path. Needs `npm run cluster -- up` (or any cluster in $KUBECONFIG with
 * the images loaded); installs the CRD and the gateway, runs the operator
 * locally as the README's walkthrough does, and deletes what it created.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { request } from "node:http";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { FUNCTION_LABEL, type Runtime } from "@faas/api";
import { KubeClient, RESOURCES } from "@faas/kube";
import { parseServerTiming } from "./cold-start.js";
import { median, ms, quantile, table, verdict } from "./lib/stats.js";

const ROOT = join(fileURLToPath(new URL(".", import.meta.url)), "../..");
const POOL_P50_FLOOR_MS = 20;
const POOL_P95_FLOOR_MS = 50;
const POOL_SIZE = 2;
/** Issue 8's floor for a cold start that waits for the function's own pod. */
const DEPLOYMENT_P50_FLOOR_MS = 600;

interface Sample {
  totalMs: number;
  status: number;
  cold: boolean;
  timing: Record<string, number>;
}

interface PathResult {
  path: "pool" | "deployment";
  runtime: Runtime;
  samples: Sample[];
}

const sleep = (msec: number) => new Promise((r) => setTimeout(r, msec));

function cluster(...args: string[]): string {
  return execFileSync("bash", [join(ROOT, "hack/cluster/cluster.sh"), ...args], { encoding: "utf8" }).trim();
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** One GET on a new connection; the whole body read. */
function coldGet(url: string): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = request(url, { agent: false }, (res) => {
      res.resume();
      res.on("end", () =>
        resolve({
          totalMs: performance.now() - t0,
          status: res.statusCode ?? 0,
          cold: res.headers["x-faas-cold-start"] === "true",
          timing: parseServerTiming(res.headers["server-timing"]),
        }),
      );
    });
    req.setTimeout(120_000, () => req.destroy(new Error("no answer within 120 s")));
    req.on("error", reject);
    req.end();
  });
}

interface PodList {
  items: {
    metadata: { name: string; labels?: Record<string, string>; deletionTimestamp?: string };
    status?: { conditions?: { type: string; status: string }[] };
  }[];
}

class Bench {
  #operator: ChildProcess | undefined;
  constructor(
    private readonly client: KubeClient,
    private readonly kubectl: string,
    private readonly kubeconfig: string,
    private readonly ns: string,
  ) {}

  run(args: string[]): string {
    return execFileSync(this.kubectl, ["--kubeconfig", this.kubeconfig, ...args], { encoding: "utf8" });
  }

  async install(): Promise<string> {
    this.run(["apply", "-f", join(ROOT, "crd.yaml")]);
    this.run(["wait", "--for=condition=Established", "crd/functions.faas.example.com", "--timeout=60s"]);
    this.run(["apply", "-f", join(ROOT, "gateway-deploy.yaml")]);
    this.run(["-n", "faas-system", "rollout", "status", "deployment/faas-gateway", "--timeout=240s"]);
    const svc = await this.client.get<{ spec: { clusterIP: string } }>({
      ...RESOURCES.services,
      namespace: "faas-system",
      name: "faas-gateway",
    });
    return svc.spec.clusterIP;
  }

  async startOperator(poolSize: number): Promise<void> {
    await this.stopOperator();
    this.#operator = spawn(
      process.execPath,
      [join(ROOT, "packages/operator/dist/main.js"), "--namespace", this.ns, "--kubeconfig", this.kubeconfig],
      { env: { ...process.env, FAAS_POOL_SIZE: String(poolSize), FAAS_LOG_LEVEL: "warn" }, stdio: "ignore" },
    );
    const child = this.#operator;
    // However the benchmark ends (an error, Ctrl-C), its operator ends with it.
    process.once("exit", () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    });
  }

  async stopOperator(): Promise<void> {
    const op = this.#operator;
    if (op === undefined || op.exitCode !== null || op.signalCode !== null) return;
    const exited = new Promise((r) => op.once("exit", r));
    op.kill("SIGTERM");
    await exited;
  }

  /** Pods of a selector, terminating ones included. */
  async anyPods(selector: string): Promise<number> {
    const list = await this.client.list({ ...RESOURCES.pods, namespace: this.ns }, { labelSelector: selector });
    return list.items.length;
  }

  async pods(selector: string): Promise<PodList["items"]> {
    const list = await this.client.list<PodList["items"][number]>(
      { ...RESOURCES.pods, namespace: this.ns },
      { labelSelector: selector },
    );
    return list.items.filter((p) => p.metadata.deletionTimestamp === undefined);
  }

  async idlePool(runtime: Runtime): Promise<number> {
    const pods = await this.pods(`faas.example.com/pool=${runtime},faas.example.com/pool-state=idle`);
    return pods.filter((p) => p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True")).length;
  }

  async rollout(runtime: Runtime): Promise<void> {
    await until("the pool deployment", () =>
      this.client.find({ ...RESOURCES.deployments, namespace: this.ns, name: `faas-pool-${runtime}` }),
    );
    this.run(["-n", this.ns, "rollout", "status", `deployment/faas-pool-${runtime}`, "--timeout=180s"]);
  }

  async applyFunction(name: string, runtime: Runtime): Promise<void> {
    const code =
      runtime === "python"
        ? "def handle(req):\n    return 'hello from runner'\n"
        : "export function handle() { return 'hello from runner'; }\n";
    await this.client.apply(
      { ...RESOURCES.functions, namespace: this.ns, name },
      {
        apiVersion: "faas.example.com/v1",
        kind: "Function",
        metadata: { name, namespace: this.ns },
        spec: { runtime, handler: "main.handle", minReplicas: 0, code },
      },
      "faas-bench",
    );
    await until(`deployment of ${name}`, () =>
      this.client.find({ ...RESOURCES.deployments, namespace: this.ns, name: `fn-${name}-deploy` }),
    );
  }

  /** Deletes every Function this benchmark may have left (an interrupted run). */
  async deleteAll(): Promise<void> {
    const list = await this.client.list<{ metadata: { name: string } }>({ ...RESOURCES.functions, namespace: this.ns });
    for (const f of list.items) if (f.metadata.name.startsWith("bench-")) await this.deleteFunction(f.metadata.name);
  }

  async deleteFunction(name: string): Promise<void> {
    await this.client.delete({ ...RESOURCES.functions, namespace: this.ns, name });
  }

  async waitGone(prefix: string): Promise<void> {
    await until(
      `pods of ${prefix}* to go`,
      async () => {
        const pods = await this.pods(FUNCTION_LABEL);
        return pods.some((p) => (p.metadata.labels?.[FUNCTION_LABEL] ?? "").startsWith(prefix)) ? undefined : true;
      },
      300_000,
    );
  }
}

async function measure(
  b: Bench,
  url: string,
  path: PathResult["path"],
  runtime: Runtime,
  samples: number,
  settle: boolean,
  log: (s: string) => void,
): Promise<PathResult> {
  const out: Sample[] = [];
  const prefix = `bench-${path}-${runtime === "python" ? "py" : "js"}-`;
  for (let i = 0; i < samples; i++) {
    const name = `${prefix}${i}`;
    await b.applyFunction(name, runtime);
    if (path === "pool")
      await until("an idle pool pod", async () => ((await b.idlePool(runtime)) > 0 ? true : undefined));
    // Both gateways' watches have the Function (and the pool pod) well before this.
    await sleep(400);
    const s = await coldGet(`${url}/invoke/${name}`);
    out.push(s);
    log(
      `  ${path} ${runtime} ${i + 1}/${samples}: ${s.status} ${ms(s.totalMs)} ms ${Object.entries(s.timing)
        .map(([k, v]) => `${k}=${ms(v)}`)
        .join(" ")}`,
    );
    await b.deleteFunction(name);
    if (settle) {
      // Each sample on a settled cluster: the last one's pods gone and the pool full again, so no pod
      // start of the previous sample competes with this one for the node's CPU.
      await until(
        `${name}'s pods to go`,
        async () =>
          (await b.anyPods(`${FUNCTION_LABEL}=${name}`)) + (await b.anyPods(`faas.example.com/claimed-for=${name}`)) ===
          0
            ? true
            : undefined,
        120_000,
      );
      if (path === "pool") {
        await until("the pool to refill", async () => ((await b.idlePool(runtime)) >= POOL_SIZE ? true : undefined));
      }
    }
  }
  await b.waitGone(prefix);
  return { path, runtime, samples: out };
}

function format(results: PathResult[]): string {
  const steps = [...new Set(results.flatMap((r) => r.samples.flatMap((s) => Object.keys(s.timing))))];
  const rows = results.map((r) => {
    const total = r.samples.map((s) => s.totalMs);
    const bad = r.samples.filter((s) => s.status !== 200 || !s.cold).length;
    return [
      `${r.path} (${r.runtime})`,
      String(r.samples.length),
      ms(quantile(total, 0.5)),
      ms(quantile(total, 0.95)),
      ms(quantile(total, 0.99)),
      ...steps.map((k) => {
        const v = r.samples.map((s) => s.timing[k]).filter((x): x is number => x !== undefined);
        return v.length === 0 ? "-" : ms(median(v));
      }),
      String(bad),
    ];
  });
  const lines = [
    "Cold start on Kubernetes (ms, from the host via the gateway Service's ClusterIP, new connection, fresh function)",
    table(["path", "n", "p50", "p95", "p99", ...steps.map((s) => `${s} p50`), "not 200/cold"], rows),
    "  step columns: medians of the server-timing header (parked = the request's wait in the gateway).",
  ];
  const base = results.find((r) => r.path === "deployment");
  for (const r of results.filter((x) => x.path === "pool")) {
    const total = r.samples.map((s) => s.totalMs);
    const p50 = quantile(total, 0.5);
    const p95 = quantile(total, 0.95);
    lines.push(
      `  floor pool (${r.runtime}): p50 ${ms(p50)} <= ${POOL_P50_FLOOR_MS} ms ${verdict(p50 <= POOL_P50_FLOOR_MS)}; ` +
        `p95 ${ms(p95)} <= ${POOL_P95_FLOOR_MS} ms ${verdict(p95 <= POOL_P95_FLOOR_MS)}`,
    );
    if (base !== undefined && base.runtime === r.runtime) {
      const ratio =
        quantile(
          base.samples.map((s) => s.totalMs),
          0.5,
        ) / p50;
      lines.push(`  pool vs Deployment 0 → 1 (${r.runtime}): p50 ${ratio.toFixed(1)}x faster`);
    }
  }
  for (const r of results.filter((x) => x.path === "deployment")) {
    const p50 = quantile(
      r.samples.map((s) => s.totalMs),
      0.5,
    );
    lines.push(
      `  floor deployment (${r.runtime}): p50 ${ms(p50)} <= ${DEPLOYMENT_P50_FLOOR_MS} ms ${verdict(p50 <= DEPLOYMENT_P50_FLOOR_MS)}`,
    );
  }
  return lines.join("\n");
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      samples: { type: "string", default: process.env.BENCH_K8S_SAMPLES ?? "30" },
      runtimes: { type: "string", default: process.env.BENCH_K8S_RUNTIMES ?? "python" },
      namespace: { type: "string", default: "default" },
      quiet: { type: "boolean", default: false },
      "no-settle": { type: "boolean", default: false },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(
      "usage: npm run bench:k8s -- [--samples 30] [--runtimes python,nodejs] [--namespace default] [--quiet] [--no-settle]\n" +
        "  --no-settle: the next sample starts while the last one's pods still start and stop\n",
    );
    return;
  }
  const samples = Number(values.samples);
  if (!Number.isInteger(samples) || samples <= 0) throw new Error(`--samples ${values.samples}: a positive integer`);
  const runtimes = (values.runtimes ?? "python").split(",").map((s) => s.trim()) as Runtime[];
  const kubeconfig = process.env.KUBECONFIG ?? cluster("kubeconfig");
  const kubectl = `${execFileSync("bash", ["-c", '. hack/cluster/versions.sh && echo "$K8S_BIN"'], { cwd: ROOT, encoding: "utf8" }).trim()}/kubectl`;
  const client = KubeClient.load({ kubeconfig });
  const ns = values.namespace ?? "default";
  const settle = values["no-settle"] !== true;
  const b = new Bench(client, kubectl, kubeconfig, ns);
  const log = (s: string): void => {
    if (!values.quiet) process.stderr.write(`${s}\n`);
  };
  const cpu = cpus();
  process.stdout.write(
    `faas Kubernetes cold-start benchmark, ${new Date().toISOString()}, ${cpu.length} x ${cpu[0]?.model ?? "cpu"}, ` +
      `load average ${loadavg()
        .map((l) => l.toFixed(2))
        .join(" ")}\n\n`,
  );
  const ip = await b.install();
  const url = `http://${ip}:8000`;
  const results: PathResult[] = [];
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => process.exit(130));
  await b.deleteAll();
  try {
    await b.startOperator(POOL_SIZE);
    for (const rt of runtimes) {
      await b.rollout(rt);
      results.push(await measure(b, url, "pool", rt, samples, settle, log));
    }
    await b.startOperator(0);
    for (const rt of runtimes) {
      await until(`the ${rt} pool to drain`, async () => ((await b.idlePool(rt)) === 0 ? true : undefined));
      results.push(await measure(b, url, "deployment", rt, samples, settle, log));
    }
  } finally {
    await b.deleteAll().catch(() => undefined);
    // Leave the namespace's pool at its default size, as the operator would.
    await b.startOperator(2);
    await sleep(2_000);
    await b.stopOperator();
  }
  process.stdout.write(`${format(results)}\n`);
  const load = loadavg()[0] as number;
  if (load > cpu.length) {
    process.stdout.write(`\nNOTE: load average ${load.toFixed(2)} on ${cpu.length} cores at the end.\n`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:k8s failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
