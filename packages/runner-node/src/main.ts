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

async function specializeFromCodeDir(dir: string): Promise<void> {
  try {
    const spec = await readCodeDir(dir);
    if (!spec) {
      log.info("code-dir-empty", { dir, message: "no function.json; staying generic" });
      return;
    }
    await runner.specialize(spec);
  } catch (err) {
    // Staying generic keeps /readyz at 503, which is what shows the failure on Kubernetes.
    log.error("code-dir-load-failed", { dir, message: describeThrown(err) });
  }
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

const loadingFromDir = config.codeDir ? specializeFromCodeDir(config.codeDir) : undefined;
const port = await runner.listen();
printListening(port);
await loadingFromDir;
