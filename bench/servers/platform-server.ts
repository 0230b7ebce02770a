/**
 * The local platform (gateway + local backend with its warm pool) in a process
 * of its own, as `faas up` runs it, so the benchmark client does not share its
 * event loop. Prints `{"event":"listening","port":N,"url":…,"token":…}`.
 * Configured by the usual FAAS_* gateway variables plus BENCH_DATA_DIR and
 * BENCH_POOL_SIZE.
 */
import { createLogger, loadGatewayConfig } from "@faas/gateway";
import { startLocalPlatform } from "@faas/local";

const env = process.env;
const log = createLogger(env.FAAS_LOG_LEVEL || "warn", "faas-bench-platform");
const dataDir = env.BENCH_DATA_DIR;
if (!dataDir) throw new Error("BENCH_DATA_DIR is required");

const platform = await startLocalPlatform({
  gateway: loadGatewayConfig({ ...env, FAAS_GATEWAY_PORT: "0" }),
  backend: {
    dataDir,
    poolSize: Number(env.BENCH_POOL_SIZE || 2),
    python: env.BENCH_PYTHON || "python3",
    node: process.execPath,
    baseEnv: { PATH: env.PATH ?? "/usr/bin:/bin", HOME: env.HOME ?? "/tmp" },
    tickMs: 500,
    scaleInDelayMs: 30_000,
  },
  log,
});

let stopping = false;
const stop = (): void => {
  if (stopping) return;
  stopping = true;
  platform.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

const port = platform.gateway.port;
process.stdout.write(
  `${JSON.stringify({ event: "listening", port, url: platform.url, token: platform.token, pid: process.pid })}\n`,
);
