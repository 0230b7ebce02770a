import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { resolvePython } from "@faas/local";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { isAlive, waitFor } from "../support/platform.js";

const PY_DIR = fileURLToPath(new URL("../../packages/runner-python", import.meta.url));
const NODE_MAIN = fileURLToPath(new URL("../../packages/runner-node/dist/main.js", import.meta.url));

const killLater: number[] = [];
afterEach(() => {
  for (const pid of killLater.splice(0)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
  }
});

/** A parent that starts one runner the way the local backend does, prints its pid, then waits. */
function parentScript(command: string, args: string[], env: Record<string, string>): string {
  return `
    const { spawn } = require("node:child_process");
    const c = spawn(${JSON.stringify(command)}, ${JSON.stringify(args)}, {
      env: { ...process.env, ...${JSON.stringify(env)}, FAAS_PORT: "0", FAAS_HOST: "127.0.0.1", FAAS_PARENT_PID: String(process.pid) },
      stdio: ["ignore", "pipe", "inherit"],
    });
    c.stdout.once("data", () => console.log(c.pid));
    setInterval(() => {}, 1000);
  `;
}

let python = "python3";
beforeAll(async () => {
  python = await resolvePython("python3");
});

describe("runners started in local mode", () => {
  for (const [runtime, command, args, env] of [
    ["python", "", ["-m", "faas_runner"], { PYTHONPATH: PY_DIR }],
    ["nodejs", process.execPath, [NODE_MAIN], {}],
  ] as const) {
    it(`${runtime}: exits when its supervisor is killed with SIGKILL`, async () => {
      const parent = spawn(process.execPath, ["-e", parentScript(command || python, [...args], env)], {
        stdio: ["ignore", "pipe", "inherit"],
      });
      killLater.push(parent.pid as number);
      const runnerPid = await new Promise<number>((resolve) =>
        parent.stdout.once("data", (d: Buffer) => resolve(Number(String(d).trim()))),
      );
      killLater.push(runnerPid);
      expect(isAlive(runnerPid)).toBe(true);
      parent.kill("SIGKILL");
      await waitFor("the orphaned runner to exit", () => !isAlive(runnerPid) || undefined, 5000);
    });
  }
});
