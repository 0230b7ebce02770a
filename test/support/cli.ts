/** The built `faas` binary as real child processes, and /proc helpers to check what they leave behind. */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const CLI_MAIN = join(ROOT, "packages/cli/dist/main.js");

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface Up {
  proc: ChildProcess;
  url: string;
  exited: Promise<number | null>;
  stderr: () => string;
}

/** The CLI's environment: nothing from the caller that could point it elsewhere. */
export function cliEnv(dataDir: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, FAAS_DATA_DIR: dataDir, NO_COLOR: "1" };
  for (const key of Object.keys(env)) if (key.startsWith("FAAS_") && key !== "FAAS_DATA_DIR") delete env[key];
  delete env.FORCE_COLOR;
  return { ...env, ...extra };
}

export function faas(dataDir: string, args: string[], extraEnv: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [CLI_MAIN, ...args], {
      env: cliEnv(dataDir, extraEnv),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    proc.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    proc.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    proc.once("error", reject);
    proc.once("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** `faas up` on port 0 with a pool of one; resolves once its state file names its URL. */
export async function startUp(dataDir: string, args: string[], extraEnv: Record<string, string> = {}): Promise<Up> {
  const proc = spawn(process.execPath, [CLI_MAIN, "up", "--port", "0", "--pool-size", "1", ...args], {
    env: cliEnv(dataDir, extraEnv),
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  let stderr = "";
  proc.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  proc.stdout?.resume();
  const stateFile = join(dataDir, "gateway.json");
  const deadline = Date.now() + 25_000;
  while (!existsSync(stateFile)) {
    if (proc.exitCode !== null) throw new Error(`faas up exited with ${proc.exitCode}: ${stderr}`);
    if (Date.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`no ${stateFile} after 25 s: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const { url } = JSON.parse(await readFile(stateFile, "utf8")) as { url: string };
  return { proc, url, exited, stderr: () => stderr };
}

function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

/** Direct children of `pid`, read from /proc. */
export function childrenOf(pid: number): number[] {
  return readdirSync("/proc")
    .filter((e) => /^\d+$/.test(e))
    .map(Number)
    .filter((p) => Number(statFields(p)?.[1]) === pid);
}

/** Running and not a zombie. */
export function alive(pid: number): boolean {
  const state = statFields(pid)?.[0];
  return state !== undefined && state !== "Z";
}

/** Whether the process is on a CPU or runnable (a spinning module is). */
export function running(pid: number): boolean {
  return statFields(pid)?.[0] === "R";
}
