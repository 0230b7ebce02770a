/**
 * Fixture for tests on a real cluster: the kubeconfig and kubectl to use, a
 * fresh namespace per test file (created before, deleted after), and helpers
 * to apply YAML, wait, port-forward and call services from the host.
 *
 * Defaults to the local cluster of hack/cluster/cluster.sh; FAAS_KUBECONFIG
 * and FAAS_KUBECTL point it at another one (a kind cluster, say).
 */
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll } from "vitest";

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "../..");
const clusterScript = join(repoRoot, "hack/cluster/cluster.sh");

function fromClusterScripts(script: string): string {
  return execFileSync("bash", ["-c", script], { cwd: repoRoot, encoding: "utf8" }).trim();
}

/** The kubectl built with the cluster (same version as the API server). */
export const kubectlPath: string =
  process.env.FAAS_KUBECTL ?? `${fromClusterScripts('. hack/cluster/versions.sh && echo "$K8S_BIN"')}/kubectl`;

/** Admin kubeconfig of the cluster under test. */
export const kubeconfigPath: string =
  process.env.FAAS_KUBECONFIG ?? fromClusterScripts(`bash ${JSON.stringify(clusterScript)} kubeconfig`);

export interface KubectlOptions {
  input?: string;
  timeoutMs?: number;
  /** Resolve with the output even when kubectl exits non-zero. */
  allowFailure?: boolean;
}

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs kubectl against the cluster under test; rejects on a non-zero exit. */
export function kubectl(args: readonly string[], opts: KubectlOptions = {}): Promise<KubectlResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(kubectlPath, ["--kubeconfig", kubeconfigPath, ...args], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 120_000);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      const result = { code: code ?? -1, stdout, stderr };
      if (result.code !== 0 && !opts.allowFailure) {
        reject(new Error(`kubectl ${args.join(" ")} exited ${result.code}: ${stderr.trim() || stdout.trim()}`));
      } else {
        resolve(result);
      }
    });
    child.stdin.end(opts.input ?? "");
  });
}

/** kubectl ... -o json, parsed. */
export async function kubectlJson<T = unknown>(args: readonly string[]): Promise<T> {
  const { stdout } = await kubectl([...args, "-o", "json"]);
  return JSON.parse(stdout) as T;
}

/** Polls `probe` until it returns a value other than undefined. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  opts: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`, { cause: lastError });
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 1_000));
  }
}

export interface TestNamespace {
  /** Filled in before the file's tests run. */
  name: string;
  /** kubectl with -n <namespace>. */
  kubectl(args: readonly string[], opts?: KubectlOptions): Promise<KubectlResult>;
  /** kubectl apply -f - in the namespace. */
  apply(yaml: string): Promise<void>;
}

/**
 * Registers a fresh namespace `faas-test-<prefix>-<random>` for the calling
 * test file: created in beforeAll, deleted (and waited for) in afterAll.
 */
export function useTestNamespace(prefix: string): TestNamespace {
  const ns: TestNamespace = {
    name: "",
    kubectl: (args, opts) => kubectl(["-n", ns.name, ...args], opts),
    apply: async (yaml) => {
      await kubectl(["-n", ns.name, "apply", "-f", "-"], { input: yaml });
    },
  };
  beforeAll(async () => {
    ns.name = `faas-test-${prefix}-${randomBytes(3).toString("hex")}`;
    await kubectl(["create", "namespace", ns.name]);
    await kubectl(["label", "namespace", ns.name, "faas.example.com/test=true"]);
    // Pods need the namespace's default service account.
    await waitFor(`service account default in ${ns.name}`, async () =>
      (await kubectl(["-n", ns.name, "get", "serviceaccount", "default"], { allowFailure: true })).code === 0
        ? true
        : undefined,
    );
  });
  afterAll(async () => {
    if (ns.name !== "") {
      await kubectl(["delete", "namespace", ns.name, "--wait=true", "--timeout=180s"], {
        timeoutMs: 200_000,
        allowFailure: true,
      });
    }
  });
  return ns;
}

export interface PortForward {
  localPort: number;
  close(): void;
}

/** kubectl port-forward to a random local port on 127.0.0.1. */
export function portForward(namespace: string, target: string, remotePort: number): Promise<PortForward> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      kubectlPath,
      [
        "--kubeconfig",
        kubeconfigPath,
        "-n",
        namespace,
        "port-forward",
        "--address",
        "127.0.0.1",
        target,
        `:${remotePort}`,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`port-forward to ${target} did not start: ${out}`));
    }, 30_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /Forwarding from 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ localPort: Number(m[1]), close: () => child.kill("SIGTERM") });
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`port-forward exited ${code}: ${out}`));
    });
  });
}

/**
 * An HTTP GET from the host with a deadline, for cluster addresses (ClusterIPs
 * and pod IPs exist only on this machine) and loopback.
 */
export async function httpGet(url: string, timeoutMs = 5_000): Promise<{ status: number; body: string }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  return { status: res.status, body: await res.text() };
}
