/**
 * `node dist/main.js`: the Node.js runner process. Wires config, the function
 * host and the HTTP server; specializes from FAAS_CODE_DIR when given one.
 */
import { loadConfig } from "./config.js";
import { describeThrown } from "./errors.js";
import { FunctionHost } from "./function-host.js";
import { readCodeDir } from "./load-spec.js";
import { createLogger, printListening } from "./log.js";
import { RunnerServer } from "./runner-server.js";

const log = createLogger({ runtime: "nodejs", pid: process.pid });
const config = loadConfig(process.env);
const host = new FunctionHost(log);
const runner = new RunnerServer(config, host, log);

/** Starts loading from the code directory; the load runs while the server starts listening. */
async function specializeFromCodeDir(dir: string): Promise<Promise<void> | undefined> {
  const failed = (err: unknown): void => {
    // Staying generic keeps /readyz at 503, which is what shows the failure on Kubernetes.
    log.error("code-dir-load-failed", { dir, message: describeThrown(err) });
  };
  try {
    const spec = await readCodeDir(dir);
    if (spec) return runner.specialize(spec).then(() => undefined, failed);
    log.info("code-dir-empty", { dir, message: "no function.json; staying generic" });
  } catch (err) {
    failed(err);
  }
  return undefined;
}

let stopping = false;
async function shutdown(signal: string): Promise<void> {
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
  process.exit(0);
}

process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));

// Read before listening, so a call that arrives during the import waits for it instead of getting 503.
const loadingFromDir = config.codeDir ? await specializeFromCodeDir(config.codeDir) : undefined;
const port = await runner.listen();
printListening(port);
await loadingFromDir;
