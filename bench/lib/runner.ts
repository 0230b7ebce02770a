/**
 * A runner process started by the benchmark itself (FAAS_PORT=0) and
 * specialized over `POST /specialize`, for rows that reach it without the
 * platform in front.
 */
import type { Runtime } from "@faas/api";
import { runnerCommand } from "@faas/local";
import { helloLoadSpec } from "./functions.js";
import { HttpClient } from "./http-client.js";
import type { Resources, Server } from "./processes.js";

export interface RunnerOptions {
  python: string;
}

export async function startHelloRunner(
  r: Resources,
  runtime: Runtime,
  name: string,
  opts: RunnerOptions,
): Promise<Server> {
  const cmd = runnerCommand(runtime, { python: opts.python, node: process.execPath, baseEnv: {} });
  const runner = await r.startServer(`${runtime} runner`, cmd.command, cmd.args, {
    env: { ...cmd.env, FAAS_PORT: "0", FAAS_HOST: "127.0.0.1" },
  });
  const client = new HttpClient(new URL(`http://127.0.0.1:${runner.port}`));
  try {
    await client.json("POST", "/specialize", { body: helloLoadSpec(name, runtime) });
  } finally {
    client.close();
  }
  return runner;
}
