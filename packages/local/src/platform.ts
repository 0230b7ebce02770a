/**
 * Local mode in one call: a gateway with the local backend, an admin token in
 * the data directory for the CLI, and optional manifests deployed at start.
 */
import { randomBytes } from "node:crypto";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type FunctionResource, RUNTIMES, type Runtime } from "@faas/api";
import { Gateway, type GatewayConfig, type Logger } from "@faas/gateway";
import { LocalBackend, type LocalBackendOptions } from "./local-backend.js";
import { resolvePython } from "./runner-commands.js";

export interface LocalPlatformOptions {
  gateway: GatewayConfig;
  backend: Omit<LocalBackendOptions, "runtimes"> & { runtimes?: readonly Runtime[] };
  functions?: readonly FunctionResource[];
  log: Logger;
  defaultMetrics?: boolean;
}

export interface LocalPlatform {
  gateway: Gateway;
  backend: LocalBackend;
  url: string;
  token: string;
  stop(): Promise<void>;
}

/** Where the CLI finds a running local gateway and its admin token. */
export const stateFile = (dataDir: string): string => join(dataDir, "gateway.json");

export async function startLocalPlatform(opts: LocalPlatformOptions): Promise<LocalPlatform> {
  const dataDir = opts.backend.dataDir;
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const token = opts.gateway.adminToken ?? randomBytes(24).toString("base64url");
  const runtimes = opts.backend.runtimes ?? RUNTIMES;
  const python = runtimes.includes("python") ? await resolvePython(opts.backend.python) : opts.backend.python;
  const backend = new LocalBackend(
    { ...opts.backend, python, runtimes },
    opts.log.child({ component: "local-backend" }),
  );
  const gateway = new Gateway({ ...opts.gateway, adminToken: token }, backend, opts.log, {
    defaultMetrics: opts.defaultMetrics ?? true,
  });
  try {
    // Functions are deployed before the port opens: the first request finds them.
    await gateway.start(async () => {
      for (const fn of opts.functions ?? []) await backend.deploy(fn);
    });
  } catch (err) {
    // The backend already spawned its warm pool; without this a failed deploy or
    // listen (port in use) leaves runner processes behind and the caller hanging.
    await backend.stop().catch(() => {});
    throw err;
  }
  const file = stateFile(dataDir);
  // Written whole or not at all: a CLI (or a test) polling for it never reads half a file.
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify({ url: gateway.url, token, pid: process.pid })}\n`, { mode: 0o600 });
  await rename(tmp, file);
  return {
    gateway,
    backend,
    url: gateway.url,
    token,
    async stop() {
      await gateway.stop();
      await rm(file, { force: true });
    },
  };
}
