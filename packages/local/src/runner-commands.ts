/** How to start a generic runner of each runtime from this checkout. */
import { fileURLToPath } from "node:url";
import type { Runtime } from "@faas/api";
import type { RunnerCommand } from "./runner-process.js";

/** The Python runner is not an npm package: it sits beside this one in the checkout (ADR 0001). */
const PYTHON_RUNNER_DIR = fileURLToPath(new URL("../../runner-python", import.meta.url));
/** A declared dependency: resolved like any import, so a missing build fails here, not at the first spawn. */
const NODE_RUNNER_MAIN = fileURLToPath(import.meta.resolve("@faas/runner-node/main"));

export interface RunnerCommandOptions {
  python: string;
  node: string;
  /** Passed to every runner (PATH, HOME, …); functions' own env comes with specialization. */
  baseEnv: Record<string, string>;
}

export function runnerCommand(runtime: Runtime, opts: RunnerCommandOptions): RunnerCommand {
  if (runtime === "python") {
    return {
      command: opts.python,
      args: ["-u", "-m", "faas_runner"],
      env: { ...opts.baseEnv, PYTHONPATH: PYTHON_RUNNER_DIR, PYTHONDONTWRITEBYTECODE: "1" },
    };
  }
  return { command: opts.node, args: [NODE_RUNNER_MAIN], env: { ...opts.baseEnv } };
}

/**
 * The real interpreter behind `python3`: version-manager shims (pyenv) run it as
 * a child of a shell, which would make our pid and signals reach the shell and
 * orphan the runner. Resolved once at start.
 */
export async function resolvePython(python: string): Promise<string> {
  const { execFile } = await import("node:child_process");
  return new Promise((resolve, reject) => {
    execFile(python, ["-c", "import sys; print(sys.executable)"], { timeout: 10_000 }, (err, stdout) => {
      if (err) {
        reject(new Error(`cannot run ${python} (needed for Python functions; set FAAS_PYTHON): ${err.message}`));
        return;
      }
      resolve(stdout.trim() || python);
    });
  });
}
