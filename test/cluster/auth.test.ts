/**
 * API keys on the cluster: a Function with `auth: apiKey`, a key made with
 * `faas keys create --kubeconfig …` (straight into the Secret faas-api-keys),
 * 401/403/200 through each of the two gateway pods on its own, the key never
 * reaching the function nor any log, and a revocation that both gateway
 * replicas apply within seconds (measured and printed).
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kubeconfigPath, kubectl, kubectlJson, repoRoot, waitFor } from "./fixture.js";
import {
  applyFunction,
  deleteFunction,
  installCrdAndGateway,
  type LocalOperator,
  pythonFunction,
  startLocalOperator,
  waitForPool,
} from "./support/platform.js";

const NS = "default";
const FN = "auth-keys";
const OTHER = "auth-keys-other";
const REVOCATION_LIMIT_MS = 5_000;
const CLI = join(repoRoot, "packages/cli/dist/main.js");

/** Returns the request headers it got (lower-cased), and prints them to its log. */
const HANDLER = `import json

def handle(req):
    headers = {k.lower(): v for k, v in req.headers.items()}
    print("headers " + json.dumps(headers, sort_keys=True), flush=True)
    return headers`;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `faas keys …` against the test cluster, with no FAAS_* settings from the caller. */
function faasKeys(args: string[]): Promise<Run> {
  return faas(["keys", ...args]);
}

/** `faas …` against the test cluster, with no FAAS_* settings from the caller. */
function faas(args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", NO_COLOR: "1" };
    const child = spawn(process.execPath, [CLI, ...args, "--kubeconfig", kubeconfigPath, "-n", NS], {
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr }));
  });
}

interface GatewayPod {
  name: string;
  ip: string;
}

async function gatewayPods(): Promise<GatewayPod[]> {
  const list = await kubectlJson<{
    items: { metadata: { name: string; deletionTimestamp?: string }; status: { phase?: string; podIP?: string } }[];
  }>(["-n", "faas-system", "get", "pods", "-l", "app.kubernetes.io/name=faas-gateway"]);
  return list.items
    .filter((p) => p.status.phase === "Running" && !p.metadata.deletionTimestamp && p.status.podIP)
    .map((p) => ({ name: p.metadata.name, ip: p.status.podIP as string }));
}

/** One request straight to one gateway pod (pod IPs are reachable from this machine only). */
async function invokeOn(
  pod: GatewayPod,
  fn: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://${pod.ip}:8000/invoke/${fn}`, { headers, signal: AbortSignal.timeout(60_000) });
  return { status: res.status, body: await res.text() };
}

describe("API keys on Kubernetes, through each of two gateway replicas", () => {
  let operator: LocalOperator;
  let pods: GatewayPod[];
  let key = "";
  let otherKey = "";
  const made: string[] = [];

  beforeAll(async () => {
    await installCrdAndGateway();
    for (const fn of [FN, OTHER]) await deleteFunction(NS, fn);
    operator = await startLocalOperator(NS);
    await applyFunction(NS, pythonFunction(FN, HANDLER, { auth: "apiKey" }), FN);
    await applyFunction(NS, pythonFunction(OTHER, HANDLER, { auth: "apiKey" }), OTHER);
    pods = await gatewayPods();
    // Both replicas know both Functions (401, not 404) before anything is measured.
    for (const pod of pods) {
      for (const fn of [FN, OTHER]) {
        await waitFor(`${pod.name} to know ${fn}`, async () =>
          (await invokeOn(pod, fn)).status === 401 ? true : undefined,
        );
      }
    }
  });
  afterAll(async () => {
    for (const id of made) await faasKeys(["revoke", id]).catch(() => {});
    for (const fn of [FN, OTHER]) await deleteFunction(NS, fn).catch(() => {});
    await operator?.stop();
  });

  it("runs two gateway replicas", () => {
    expect(pods).toHaveLength(2);
  });

  it("lets the gateway read the keys' Secret and no other: watch by name, no list of all Secrets, no writes", async () => {
    const canI = async (...args: string[]): Promise<string> =>
      (
        await kubectl(["auth", "can-i", ...args, "-n", NS, "--as=system:serviceaccount:faas-system:faas-gateway"], {
          allowFailure: true,
        })
      ).stdout.trim();
    expect(await canI("get", "secrets/faas-api-keys")).toBe("yes");
    expect(await canI("watch", "secrets/faas-api-keys")).toBe("yes");
    expect(await canI("list", "secrets")).toBe("no");
    expect(await canI("get", "secrets/some-other-secret")).toBe("no");
    expect(await canI("patch", "secrets/faas-api-keys")).toBe("no");
  });

  it("creates keys with the CLI into the Secret, which holds hashes only", async () => {
    const created = await faasKeys(["create", FN]);
    expect(created.code, created.stderr).toBe(0);
    key = created.stdout.trim();
    expect(key).toMatch(/^fk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    made.push(key.split("_")[1] as string);
    const other = await faasKeys(["create", OTHER, "--json"]);
    expect(other.code, other.stderr).toBe(0);
    const parsed = JSON.parse(other.stdout) as { id: string; key: string; function: string };
    expect(parsed.function).toBe(OTHER);
    otherKey = parsed.key;
    made.push(parsed.id);

    const secret = await kubectlJson<{ metadata: { labels: Record<string, string> }; data: Record<string, string> }>([
      "-n",
      NS,
      "get",
      "secret",
      "faas-api-keys",
    ]);
    expect(secret.metadata.labels["faas.example.com/keys"]).toBe("true");
    const stored = Object.values(secret.data)
      .map((v) => Buffer.from(v, "base64").toString())
      .join("\n");
    expect(stored).toContain(made[0]);
    expect(stored).not.toContain(key);
    expect(stored).not.toContain(otherKey);

    const listed = await faasKeys(["list", FN]);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toContain(made[0]);
    expect(listed.stdout).not.toContain(key);
  });

  it("answers 401 without a key, 403 with another function's or a wrong key, 200 with the key, on each pod", async () => {
    await waitForPool(NS, "python", 1);
    const wrong = `${key.slice(0, -2)}${key.endsWith("AA") ? "BB" : "AA"}`;
    for (const pod of pods) {
      const none = await invokeOn(pod, FN);
      expect(none.status, pod.name).toBe(401);
      expect(JSON.parse(none.body)).toMatchObject({ error: { code: "UNAUTHORIZED" } });
      for (const headers of <Record<string, string>[]>[
        { authorization: `Bearer ${otherKey}` },
        { "x-faas-key": wrong },
      ]) {
        const r = await invokeOn(pod, FN, headers);
        expect(r.status, `${pod.name} ${Object.keys(headers)[0]}`).toBe(403);
        expect(JSON.parse(r.body)).toMatchObject({ error: { code: "FORBIDDEN" } });
      }
      // Each replica sees a key within moments of its creation.
      const ok = await waitFor(
        `${pod.name} to accept the new key`,
        async () => {
          const r = await invokeOn(pod, FN, { authorization: `Bearer ${key}` });
          return r.status === 200 ? r : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 100 },
      );
      const seen = JSON.parse(ok.body) as Record<string, string>;
      expect(seen).not.toHaveProperty("authorization");
      expect(ok.body).not.toContain(key);
      const viaHeader = await invokeOn(pod, FN, { "x-faas-key": key });
      expect(viaHeader.status, pod.name).toBe(200);
      expect(JSON.parse(viaHeader.body)).not.toHaveProperty("x-faas-key");
      expect((await invokeOn(pod, OTHER, { "x-faas-key": otherKey })).status, pod.name).toBe(200);
    }
  });

  it("a revocation is refused by both replicas within 5 s", async () => {
    for (const pod of pods) expect((await invokeOn(pod, FN, { "x-faas-key": key })).status).toBe(200);
    const id = key.split("_")[1] as string;
    const started = performance.now();
    const revoked = await faasKeys(["revoke", id]);
    expect(revoked.code, revoked.stderr).toBe(0);
    const written = performance.now() - started;
    const refusedAfter = await Promise.all(
      pods.map(async (pod) => {
        for (;;) {
          const r = await invokeOn(pod, FN, { "x-faas-key": key });
          if (r.status === 403) return performance.now() - started;
          expect(r.status).toBe(200);
          if (performance.now() - started > 30_000) throw new Error(`${pod.name} still accepts a revoked key`);
          await new Promise((r) => setTimeout(r, 20));
        }
      }),
    );
    const slowest = Math.max(...refusedAfter);
    const each = pods.map((p, i) => `${p.name} ${refusedAfter[i]?.toFixed(0)} ms`).join(", ");
    console.log(
      `auth: revoked key refused ${slowest.toFixed(0)} ms after \`faas keys revoke\` started (${each}); ` +
        `the CLI took ${written.toFixed(0)} ms, so the gateways followed the Secret within ${(slowest - written).toFixed(0)} ms of the write`,
    );
    expect(slowest).toBeLessThanOrEqual(REVOCATION_LIMIT_MS);
    // The other function's key is untouched.
    for (const pod of pods) expect((await invokeOn(pod, OTHER, { "x-faas-key": otherKey })).status).toBe(200);
  });

  it("never shows a key: not in gateway or function logs, nor in the Function objects", async () => {
    const texts: string[] = [];
    for (const pod of pods) texts.push((await kubectl(["-n", "faas-system", "logs", pod.name])).stdout);
    const fnPods = await kubectlJson<{ items: { metadata: { name: string } }[] }>([
      "-n",
      NS,
      "get",
      "pods",
      "-l",
      `faas.example.com/claimed-for in (${FN},${OTHER})`,
    ]);
    const own = await kubectlJson<{ items: { metadata: { name: string } }[] }>([
      "-n",
      NS,
      "get",
      "pods",
      "-l",
      `faas.example.com/function in (${FN},${OTHER})`,
    ]);
    let functionLogs = "";
    for (const p of [...fnPods.items, ...own.items]) {
      functionLogs += (await kubectl(["-n", NS, "logs", p.metadata.name], { allowFailure: true })).stdout;
    }
    // The handler printed what it received: the logs are there, the keys are not.
    expect(functionLogs).toContain("headers {");
    texts.push(functionLogs);
    texts.push((await kubectl(["-n", NS, "get", "functions", "-o", "yaml"])).stdout);
    texts.push((await faasKeys(["list"])).stdout);
    const all = texts.join("\n");
    for (const k of [key, otherKey]) {
      expect(all).not.toContain(k);
      expect(all).not.toContain(k.slice(20));
    }
  });

  it("`faas delete` takes the function's keys with it, and no other function's", async () => {
    const kept = await faasKeys(["create", FN, "--json"]);
    expect(kept.code, kept.stderr).toBe(0);
    const keptId = (JSON.parse(kept.stdout) as { id: string }).id;
    made.push(keptId);
    const otherId = otherKey.split("_")[1] as string;
    expect((await faasKeys(["list"])).stdout).toContain(otherId);

    const deleted = await faas(["delete", OTHER]);
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(deleted.stdout).toMatch(new RegExp(`deleted ${OTHER} and its 1 API key$`, "m"));
    const listed = await faasKeys(["list"]);
    expect(listed.stdout).not.toContain(otherId);
    expect(listed.stdout).toContain(keptId);
    const secret = await kubectlJson<{ data: Record<string, string> }>(["-n", NS, "get", "secret", "faas-api-keys"]);
    expect(Object.keys(secret.data)).not.toContain(otherId);
    expect(Object.keys(secret.data)).toContain(keptId);
  });
});
