/**
 * `node dist/main.js`: the Node.js runner process. Wires config, the function
 * host and the HTTP server; specializes from FAAS_CODE_DIR when given one.
 */

import { existsSync, writeFileSync } from "node:fs";
import { announce, announcement } from "./announce.js";
import { loadConfig } from "./config.js";
import { describeThrown, RunnerError } from "./errors.js";
import { FunctionHost } from "./function-host.js";
import { type LoadSpec, readCodeDir, readEnvSpec } from "./load-spec.js";
import { createLogger, printListening } from "./log.js";
import { RunnerServer } from "./runner-server.js";

const TERMINATION_LOG = "/dev/termination-log";
const log = createLogger({ runtime: "nodejs", pid: process.pid });
const config = loadConfig(process.env);
const host = new FunctionHost(log, config.loadTimeoutMs, !config.preloaded, {
  cacheDir: config.packageCacheDir,
  maxBytes: config.packageMaxBytes,
  maxEntries: config.packageMaxEntries,
  timeoutMs: config.packagePullTimeoutMs,
});
// Code stuck at its top level may have left anything behind: this process is not reused.
const runner = new RunnerServer(config, host, log, () => void shutdown("load-timeout", 3));

/** A code directory that cannot be loaded is fatal (exit 1), as in the Python runner (docs/runner-protocol.md). */
function failCodeDir(dir: string, err: unknown): never {
  const message = err instanceof RunnerError ? err.message : describeThrown(err);
  log.error("code-dir-load-failed", { dir, message });
  writeTerminationLog(`code-dir-load-failed: ${message}`);
  process.exit(1);
}

/** Kubernetes shows this file's text in the pod's status; absent outside a pod. */
function writeTerminationLog(text: string): void {
  try {
    if (existsSync(TERMINATION_LOG)) writeFileSync(TERMINATION_LOG, `${text}\n`);
  } catch {
    // Not writable: the log line is enough.
  }
}

async function readSpecFromCodeDir(dir: string): Promise<LoadSpec | undefined> {
  try {
    const spec = await readCodeDir(dir);
    if (!spec) log.info("code-dir-empty", { dir, message: "no function.json; staying generic" });
    return spec;
  } catch (err) {
    failCodeDir(dir, err);
  }
}

let stopping = false;
async function shutdown(signal: string, code = 0): Promise<void> {
  if (stopping) {
    log.error("forced-exit", { signal });
    process.exit(1);
  }
  stopping = true;
  log.info("draining", { signal });
  await runner.drain();
  await host.close();
  runner.close();
  log.info("stopped");
  process.exit(code);
}

process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));

/** The function's code as the pod was given it: in the environment (no volume), or in a code directory. */
async function readStartSpec(): Promise<{ spec: LoadSpec | undefined; source: string }> {
  if (config.functionSpec !== undefined) {
    const source = "FAAS_FUNCTION_SPEC";
    try {
      return { spec: await readEnvSpec(config.functionSpec, config.functionCode), source };
    } catch (err) {
      failCodeDir(source, err);
    }
  }
  const dir = config.codeDir;
  return { spec: dir ? await readSpecFromCodeDir(dir) : undefined, source: dir ?? "" };
}

const { spec, source } = await readStartSpec();
// Started before listening, so a call that arrives during the import waits for it instead of getting 503.
const loading = spec ? runner.specialize(spec).catch((err: unknown) => failCodeDir(source, err)) : undefined;
const port = await runner.listen();
// A pooled runner is taken as soon as it says it listens: say so once its worker is warm.
await host.warm();
if (!config.preloaded) await runner.warmUp();
printListening(port);
if (loading !== undefined && config.announceUrl !== undefined) {
  const announceUrl = config.announceUrl;
  // Once the function is loaded, tell the gateways where this pod answers (announce.ts).
  void loading
    .then(() => {
      const body = announcement(config, port);
      return body === undefined ? false : announce(announceUrl, body, log);
    })
    .catch(() => undefined);
}
if (config.parentPid !== undefined) {
  // Local mode: a runner whose supervisor died (even by SIGKILL) must not linger.
  const parentPid = config.parentPid;
  setInterval(() => {
    if (process.ppid !== parentPid) {
      try {
        log.info("parent gone: exiting", { parent: parentPid });
      } finally {
        process.exit(0);
      }
    }
  }, 500).unref();
}
await loading;
