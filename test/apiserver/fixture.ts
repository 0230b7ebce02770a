/**
 * A real kube-apiserver and etcd, without kubelet or controllers, started in
 * a couple of seconds for one test file (controller-runtime's envtest, in
 * TypeScript). Both use the binaries hack/cluster/build-binaries.sh caches,
 * free ports and a private temp directory, so they never meet the project's
 * cluster; they are stopped by PID. The Function CRD (crd.yaml) is applied.
 *
 * Clients reach the API server through a FaultProxy (plain HTTP, no auth:
 * the proxy adds the token), so a test can delay, hold, fail and cut.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { KubeClient } from "@faas/kube";
import { parse } from "yaml";
import { FaultProxy } from "./fault-proxy.js";

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "../..");

/** Where the cached binaries are, and why the suite cannot run when they are missing. */
export function findBinaries(): { dir: string; missing: string | undefined } {
  const dir =
    process.env.FAAS_K8S_BIN ??
    execFileSync("bash", ["-c", '. hack/cluster/versions.sh && echo "$K8S_BIN"'], {
      cwd: repoRoot,
      encoding: "utf8",
    }).trim();
  const absent = ["etcd", "kube-apiserver"].filter((b) => !existsSync(join(dir, b)));
  return {
    dir,
    missing:
      absent.length === 0
        ? undefined
        : `${absent.join(" and ")} not in ${dir}: run \`bash hack/cluster/build-binaries.sh\` to build them`,
  };
}

/** Skips a suite when the binaries are missing (printing why); fails instead when FAAS_REQUIRE_APISERVER=1 (CI). */
export function apiServerSkipReason(): string | undefined {
  const { missing } = findBinaries();
  if (missing === undefined) return undefined;
  if (process.env.FAAS_REQUIRE_APISERVER === "1") throw new Error(`API-server tests required, but ${missing}`);
  console.log(`skipping the API-server tests: ${missing}`);
  return missing;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export class ApiServer {
  readonly dir = mkdtempSync(join(tmpdir(), "faas-apiserver-"));
  readonly token = randomBytes(16).toString("hex");
  readonly proxy: FaultProxy;
  #etcd: ChildProcess | undefined;
  #apiserver: ChildProcess | undefined;
  #etcdPort = 0;
  #apiPort = 0;
  readonly #bin: string;

  private constructor() {
    this.#bin = findBinaries().dir;
    this.proxy = new FaultProxy(() => ({ port: this.#apiPort, token: this.token }));
  }

  /** Starts etcd, the API server and the proxy, and applies the CRD. */
  static async start(): Promise<ApiServer> {
    const s = new ApiServer();
    try {
      await s.#startEtcd();
      await s.#startApiServer();
      await s.proxy.start();
      await s.#applyCrd();
    } catch (err) {
      await s.stop();
      throw err;
    }
    return s;
  }

  /** Direct HTTPS to the API server (no faults), for tests' own setup. */
  get url(): string {
    return `https://127.0.0.1:${this.#apiPort}`;
  }

  /** A kubeconfig pointing at the proxy (or, `direct`, at the API server itself). */
  kubeconfig(opts: { direct?: boolean } = {}): string {
    const file = join(this.dir, opts.direct ? "direct.kubeconfig" : "proxy.kubeconfig");
    const cluster = opts.direct
      ? { server: this.url, "insecure-skip-tls-verify": true }
      : { server: this.proxy.url, "insecure-skip-tls-verify": true };
    const user = opts.direct ? { token: this.token } : {};
    writeFileSync(
      file,
      JSON.stringify({
        apiVersion: "v1",
        kind: "Config",
        clusters: [{ name: "test", cluster }],
        users: [{ name: "test", user }],
        contexts: [{ name: "test", context: { cluster: "test", user: "test" } }],
        "current-context": "test",
      }),
    );
    return file;
  }

  /** A client through the proxy (what the code under test uses). */
  client(): KubeClient {
    return KubeClient.load({ kubeconfig: this.kubeconfig(), requestTimeoutMs: 10_000 });
  }

  /** A client straight to the API server (what the test uses to set the scene). */
  directClient(): KubeClient {
    return KubeClient.load({ kubeconfig: this.kubeconfig({ direct: true }), requestTimeoutMs: 10_000 });
  }

  /** Stops the API server (SIGTERM, by PID) and starts a new one on the same port and etcd. */
  async restartApiServer(opts: { downMs?: number } = {}): Promise<void> {
    await stopProcess(this.#apiserver, 1000);
    this.#apiserver = undefined;
    if (opts.downMs) await new Promise((r) => setTimeout(r, opts.downMs));
    await this.#startApiServer();
  }

  async stop(): Promise<void> {
    await this.proxy.stop();
    // Its state is thrown away: no need to let it drain its watches.
    await stopProcess(this.#apiserver, 0);
    await stopProcess(this.#etcd, 1000);
    rmSync(this.dir, { recursive: true, force: true });
  }

  async #startEtcd(): Promise<void> {
    this.#etcdPort = await freePort();
    const peer = await freePort();
    const url = `http://127.0.0.1:${this.#etcdPort}`;
    const peerUrl = `http://127.0.0.1:${peer}`;
    this.#etcd = this.#spawn("etcd", [
      "--name=test",
      `--data-dir=${join(this.dir, "etcd")}`,
      `--listen-client-urls=${url}`,
      `--advertise-client-urls=${url}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=test=${peerUrl}`,
      "--listen-metrics-urls=",
      "--unsafe-no-fsync",
      "--log-level=warn",
    ]);
    await waitUntil(
      async () => (await fetch(`${url}/health`).then((r) => r.ok)).valueOf(),
      20_000,
      "etcd health",
      this.#etcd,
    );
  }

  async #startApiServer(): Promise<void> {
    const saKey = join(this.dir, "sa.key");
    if (!existsSync(saKey)) {
      const { privateKey } = generateKeyPairSync("rsa", {
        modulusLength: 2048,
        privateKeyEncoding: { type: "pkcs8", format: "pem" },
        publicKeyEncoding: { type: "spki", format: "pem" },
      });
      writeFileSync(saKey, privateKey, { mode: 0o600 });
      writeFileSync(join(this.dir, "tokens.csv"), `${this.token},test-admin,test-admin,"system:masters"\n`, {
        mode: 0o600,
      });
    }
    this.#apiPort ||= await freePort();
    this.#apiserver = this.#spawn("kube-apiserver", [
      `--etcd-servers=http://127.0.0.1:${this.#etcdPort}`,
      "--bind-address=127.0.0.1",
      "--advertise-address=127.0.0.1",
      `--secure-port=${this.#apiPort}`,
      // No certificate given: the API server makes a self-signed one here.
      `--cert-dir=${join(this.dir, "certs")}`,
      "--service-cluster-ip-range=10.0.0.0/24",
      "--service-account-issuer=https://kubernetes.default.svc",
      `--service-account-key-file=${saKey}`,
      `--service-account-signing-key-file=${saKey}`,
      `--token-auth-file=${join(this.dir, "tokens.csv")}`,
      "--authorization-mode=RBAC",
      "--allow-privileged=true",
      "--profiling=false",
      "--v=0",
    ]);
    await waitUntil(
      async () => (await this.#raw("GET", "/readyz")).status === 200,
      60_000,
      "kube-apiserver /readyz",
      this.#apiserver,
    );
  }

  async #applyCrd(): Promise<void> {
    const crd = parse(readFileSync(join(repoRoot, "crd.yaml"), "utf8")) as unknown;
    const res = await this.#raw(
      "PATCH",
      "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/functions.faas.example.com?fieldManager=test&force=true",
      JSON.stringify(crd),
      "application/apply-patch+yaml",
    );
    if (res.status >= 300) throw new Error(`applying crd.yaml: ${res.status} ${res.body}`);
    await waitUntil(
      async () => (await this.#raw("GET", "/apis/faas.example.com/v1/functions")).status === 200,
      20_000,
      "the Function CRD served",
    );
  }

  /** One request straight to the API server with the admin token. */
  #raw(method: string, path: string, body?: string, contentType?: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: "127.0.0.1",
          port: this.#apiPort,
          method,
          path,
          rejectUnauthorized: false,
          headers: {
            authorization: `Bearer ${this.token}`,
            ...(body === undefined ? {} : { "content-type": contentType ?? "application/json" }),
          },
          timeout: 5000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
          res.on("error", reject);
        },
      );
      req.on("timeout", () => req.destroy(new Error(`${method} ${path} timed out`)));
      req.on("error", reject);
      req.end(body);
    });
  }

  #spawn(name: string, args: string[]): ChildProcess {
    const child = spawn(join(this.#bin, name), args, { stdio: ["ignore", "ignore", "pipe"] });
    // Never outlive the test process, even when it ends without running afterAll.
    const kill = (): void => {
      child.kill("SIGKILL");
    };
    process.once("exit", kill);
    child.once("exit", () => process.off("exit", kill));
    // Keep the tail of stderr for error messages; the API server is chatty.
    let tail = "";
    child.stderr?.on("data", (c: Buffer) => {
      tail = (tail + c.toString()).slice(-4000);
    });
    (child as ChildProcess & { stderrTail: () => string }).stderrTail = () => tail;
    return child;
  }
}

async function waitUntil(
  check: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
  child?: ChildProcess,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (child && child.exitCode !== null) {
      const tail = (child as ChildProcess & { stderrTail?: () => string }).stderrTail?.() ?? "";
      throw new Error(`${what}: the process exited with ${child.exitCode}\n${tail}`);
    }
    try {
      if (await check()) return;
    } catch {}
    if (performance.now() > deadline) throw new Error(`${what}: not ready within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** SIGTERM by PID, SIGKILL after `graceMs` (watches keep an API server draining for long); resolves once exited. */
async function stopProcess(child: ChildProcess | undefined, graceMs: number): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}
