/** Starts a real local platform (gateway + runner processes) for a test. */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type FunctionResource, type FunctionSpecInput, makeFunction } from "@faas/api";
import { DEFAULT_GATEWAY_CONFIG, type GatewayConfig } from "@faas/gateway";
import { type LocalBackendOptions, type LocalPlatform, startLocalPlatform } from "@faas/local";
import { pino } from "pino";
import { call, type Reply } from "./http.js";

export interface TestPlatform extends LocalPlatform {
  dataDir: string;
  invoke(name: string, opts?: Parameters<typeof call>[1] & { path?: string }): Promise<Reply>;
  admin(method: string, path: string, body?: unknown): Promise<Reply>;
  metrics(): Promise<string>;
  deploy(name: string, spec: FunctionSpecInput): Promise<FunctionResource>;
}

export async function startTestPlatform(
  opts: { gateway?: Partial<GatewayConfig>; backend?: Partial<LocalBackendOptions>; dataDir?: string } = {},
): Promise<TestPlatform> {
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), "faas-test-")));
  const platform = await startLocalPlatform({
    gateway: { ...DEFAULT_GATEWAY_CONFIG, port: 0, ...opts.gateway },
    backend: {
      dataDir,
      poolSize: 1,
      python: "python3",
      node: process.execPath,
      baseEnv: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
      tickMs: 100,
      scaleInDelayMs: 30_000,
      ...opts.backend,
    },
    log: pino({ level: process.env.FAAS_TEST_LOG ?? "silent" }),
    defaultMetrics: false,
  });
  const auth = { authorization: `Bearer ${platform.token}` };
  return {
    ...platform,
    dataDir,
    async stop() {
      await platform.stop();
      if (opts.dataDir === undefined) await rm(dataDir, { recursive: true, force: true });
    },
    invoke: (name, o = {}) => call(`${platform.url}/invoke/${name}${o.path ?? ""}`, o),
    admin: (method, path, body) =>
      call(`${platform.url}/admin${path}`, {
        method,
        headers: { ...auth, "content-type": "application/json" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      }),
    metrics: async () => (await call(`${platform.url}/metrics`)).body,
    async deploy(name, spec) {
      const fn = makeFunction(name, spec);
      await platform.backend.deploy(fn);
      return fn;
    },
  };
}

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
