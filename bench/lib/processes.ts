/**
 * Every process and temp directory the benchmark creates, and their removal:
 * children are stopped by PID (SIGTERM, then SIGKILL to the process group they
 * lead), at the end, on Ctrl-C and on errors.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const STOP_GRACE_MS = 5_000;
const TAIL_LINES = 20;

export interface Server {
  readonly name: string;
  readonly pid: number;
  readonly port: number;
  /** The JSON line the server announced itself with. */
  readonly hello: Record<string, unknown>;
  /** Last lines of its output, for error messages. */
  tail(): string;
  /** Resolves when the process has exited. */
  readonly exited: Promise<void>;
}

export interface SpawnOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  startTimeoutMs?: number;
  /** For servers that print nothing: ready once this port accepts a connection. */
  listenPort?: number;
}

export class Resources {
  readonly #children = new Map<number, { name: string; child: ChildProcess; exited: Promise<void> }>();
  readonly #dirs: string[] = [];
  #cleaning: Promise<void> | undefined;

  async tempDir(prefix: string): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), `faas-bench-${prefix}-`));
    this.#dirs.push(dir);
    return dir;
  }

  /**
   * Starts a long-lived server that prints `{"event":"listening","port":N,...}`
   * on stdout, and resolves once it has. The child leads its own process group
   * so that anything it starts can be stopped with it.
   */
  startServer(name: string, command: string, args: readonly string[], opts: SpawnOptions = {}): Promise<Server> {
    const child = spawn(command, args, {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    const exited = this.#track(name, child);
    const lines: string[] = [];
    const remember = (line: string): void => {
      lines.push(line);
      if (lines.length > TAIL_LINES) lines.shift();
    };
    const tail = (): string => lines.join("\n");
    createInterface({ input: child.stderr as NodeJS.ReadableStream }).on("line", remember);
    const stdout = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    return new Promise<Server>((resolve, reject) => {
      let started = false;
      const timeoutMs = opts.startTimeoutMs ?? 15_000;
      const timer = setTimeout(() => fail(`no "listening" line within ${timeoutMs} ms`), timeoutMs);
      const fail = (why: string): void => {
        clearTimeout(timer);
        if (!started) reject(new Error(`${name} (${command}) did not start: ${why}\n${tail()}`));
      };
      child.once("error", (err) => fail(err.message));
      void exited.then(() => fail(`exited with ${child.exitCode ?? child.signalCode}`));
      const ready = (hello: Record<string, unknown>): void => {
        started = true;
        clearTimeout(timer);
        resolve({ name, pid: child.pid as number, port: hello.port as number, hello, tail, exited });
      };
      if (opts.listenPort !== undefined) {
        const port = opts.listenPort;
        void waitForPort(port, () => started || child.exitCode !== null || child.signalCode !== null).then((ok) => {
          if (ok) ready({ event: "listening", port });
        });
      }
      stdout.on("line", (line) => {
        if (started || opts.listenPort !== undefined) return remember(line);
        const hello = listening(line);
        if (hello === undefined) return remember(line);
        ready(hello);
      });
    });
  }

  /** Runs a command to completion and returns its stdout (stderr on failure). */
  run(name: string, command: string, args: readonly string[], opts: SpawnOptions = {}): Promise<string> {
    const child = spawn(command, args, {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    const exited = this.#track(name, child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on("data", (c: Buffer) => out.push(c));
    child.stderr?.on("data", (c: Buffer) => err.push(c));
    return new Promise<string>((resolve, reject) => {
      child.once("error", reject);
      void exited.then(() => {
        if (child.exitCode === 0) resolve(Buffer.concat(out).toString("utf8"));
        else {
          const why = child.exitCode ?? child.signalCode;
          reject(new Error(`${name} failed (${why}): ${Buffer.concat(err).toString("utf8").slice(-2000)}`));
        }
      });
    });
  }

  #track(name: string, child: ChildProcess): Promise<void> {
    const exited = new Promise<void>((resolve) => {
      child.once("exit", () => resolve());
      child.once("error", () => resolve());
    });
    const pid = child.pid;
    if (pid !== undefined) {
      this.#children.set(pid, { name, child, exited });
      void exited.then(() => this.#children.delete(pid));
    }
    return exited;
  }

  /** SIGTERM to one server, SIGKILL to its group after the grace period. */
  async stop(server: Pick<Server, "pid">, graceMs = STOP_GRACE_MS): Promise<void> {
    const entry = this.#children.get(server.pid);
    if (entry === undefined) return killGroup(server.pid);
    await stopChild(server.pid, entry.exited, graceMs);
  }

  /** Stops every child and removes every temp directory; safe to call twice. */
  cleanup(): Promise<void> {
    this.#cleaning ??= (async () => {
      await Promise.all([...this.#children.entries()].map(([pid, e]) => stopChild(pid, e.exited, STOP_GRACE_MS)));
      await Promise.all(this.#dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
    })();
    return this.#cleaning;
  }
}

async function stopChild(pid: number, exited: Promise<void>, graceMs: number): Promise<void> {
  signal(pid, "SIGTERM");
  const timedOut = await Promise.race([
    exited.then(() => false),
    new Promise<boolean>((r) => setTimeout(() => r(true), graceMs).unref()),
  ]);
  if (timedOut) signal(pid, "SIGKILL");
  await Promise.race([exited, new Promise((r) => setTimeout(r, 1000).unref())]);
  // Anything the child started and left behind (its process group) goes too.
  killGroup(pid);
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, "SIGKILL");
  } catch {
    // no such group: nothing left
  }
}

/** Tries to connect every 20 ms until it works (true) or `give up` says so (false). */
async function waitForPort(port: number, giveUp: () => boolean): Promise<boolean> {
  while (!giveUp()) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (ok) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

function listening(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith("{") || !line.includes('"listening"')) return undefined;
  try {
    const msg = JSON.parse(line) as Record<string, unknown>;
    return msg.event === "listening" && typeof msg.port === "number" ? msg : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Runs `body` with a Resources that is cleaned up however the run ends:
 * normally, by an error, or by Ctrl-C / SIGTERM.
 */
export async function withResources<T>(body: (r: Resources) => Promise<T>): Promise<T> {
  const resources = new Resources();
  const onSignal = (sig: NodeJS.Signals): void => {
    process.stderr.write(`\n${sig}: stopping benchmark processes…\n`);
    void resources.cleanup().finally(() => process.exit(sig === "SIGINT" ? 130 : 143));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    return await body(resources);
  } finally {
    await resources.cleanup();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
