/**
 * One runner child process on 127.0.0.1: spawned generic, specialized over
 * HTTP, stopped with SIGTERM (drain) and SIGKILL after a grace period.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import { Agent, request } from "node:http";
import { createInterface } from "node:readline";
import { FaasError, type LoadSpec, parseErrorBody, type Runtime } from "@faas/api";

export interface RunnerCommand {
  command: string;
  args: string[];
  env: Record<string, string>;
}

export type RunnerState = "generic" | "specialized" | "stopping" | "exited";

export interface RunnerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** What a runner needs besides its command: how long it may take to start and to load code. */
export interface RunnerLimits {
  /** A start or a load (specialization) that takes longer fails, and the runner is killed. */
  loadTimeoutMs: number;
}

/**
 * Emits `line` (text, stream) for each line the runner prints (the listening
 * line excepted) and `exit` (RunnerExit) once.
 */
export class RunnerProcess extends EventEmitter {
  state: RunnerState = "generic";
  /** Set by stop(): an exit after it is not a crash. */
  stopRequested = false;
  fn: string | undefined;
  codeHash: string | undefined;
  readonly startedAt = performance.now();
  exitInfo: RunnerExit | undefined;
  readonly exited: Promise<RunnerExit>;
  /**
   * The supervisor's kept-alive connection for control requests, opened when the
   * runner starts (`ping`), so a specialization does not pay for a connect.
   * Idle sockets close before the runner's own keep-alive timeout (75 s).
   */
  readonly #control = new Agent({ keepAlive: true, maxSockets: 1, timeout: 60_000 });

  private constructor(
    readonly runtime: Runtime,
    readonly child: ChildProcess,
    readonly port: number,
    exited: Promise<RunnerExit>,
    private readonly limits: RunnerLimits,
  ) {
    super();
    this.exited = exited;
  }

  get id(): string {
    return `${this.runtime}-${this.child.pid}`;
  }
  get pid(): number {
    return this.child.pid as number;
  }
  get alive(): boolean {
    return this.exitInfo === undefined;
  }

  static spawn(runtime: Runtime, cmd: RunnerCommand, limits: RunnerLimits): Promise<RunnerProcess> {
    const startTimeoutMs = limits.loadTimeoutMs;
    const child = spawn(cmd.command, cmd.args, {
      env: {
        ...cmd.env,
        FAAS_PORT: "0",
        FAAS_HOST: "127.0.0.1",
        FAAS_PARENT_PID: String(process.pid),
        FAAS_LOAD_TIMEOUT_MS: String(limits.loadTimeoutMs),
      },
      stdio: ["ignore", "pipe", "pipe"],
      // Its own process group: a terminal's Ctrl-C reaches `faas up`, which drains
      // and stops runners in order; runners still exit if it dies (FAAS_PARENT_PID).
      detached: true,
    });
    let runner: RunnerProcess | undefined;
    const early: string[] = [];
    const exited = new Promise<RunnerExit>((resolve) => {
      child.once("exit", (code, signal) => {
        const info = { code, signal };
        if (runner !== undefined) {
          runner.exitInfo = info;
          runner.state = "exited";
          runner.emit("exit", info);
        }
        resolve(info);
      });
    });
    const stderr = createInterface({ input: child.stderr as NodeJS.ReadableStream });
    stderr.on("line", (line) => (runner ? runner.emit("line", line, "stderr") : early.push(line)));
    const stdout = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    return new Promise<RunnerProcess>((resolve, reject) => {
      const fail = (why: string): void => {
        clearTimeout(timer);
        killGroup(child);
        const tail = early.slice(-5).join("\n  ");
        reject(new FaasError("SCALE_UP_FAILED", `${runtime} runner did not start: ${why}${tail ? `\n  ${tail}` : ""}`));
      };
      const timer = setTimeout(() => fail(`no "listening" line within ${startTimeoutMs} ms`), startTimeoutMs);
      child.once("error", (err) => fail(`${cmd.command}: ${err.message}`));
      void exited.then((info) => {
        if (runner === undefined) fail(`exited with ${info.code ?? info.signal}`);
      });
      stdout.on("line", (line) => {
        if (runner !== undefined) {
          runner.emit("line", line, "stdout");
          return;
        }
        const port = listeningPort(line);
        if (port === undefined) {
          early.push(line);
          return;
        }
        clearTimeout(timer);
        runner = new RunnerProcess(runtime, child, port, exited, limits);
        const started = runner;
        void exited.then(() => started.#control.destroy());
        void started.ping().then(() => resolve(started));
      });
    });
  }

  /**
   * Loads a function; returns the round trip and the runner's own import time
   * (its `loadMs`), in ms. A load that does
   * not finish within the load timeout fails with FUNCTION_LOAD_FAILED and the
   * runner is killed: code stuck at its top level cannot be trusted to stop.
   * `onSent` is called once the request is on its way (the runner may be sent
   * invocations from then on: it holds them until the load is done).
   */
  async specialize(spec: LoadSpec, hash: string, onSent?: () => void): Promise<{ totalMs: number; importMs: number }> {
    const started = performance.now();
    const timeoutMs = this.limits.loadTimeoutMs;
    // The runner enforces the same limit itself and answers; this is the backstop.
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), timeoutMs + LOAD_GRACE_MS);
    let answer: { status: number; body: string };
    try {
      const sent = this.#post("POST", "/specialize", JSON.stringify(spec), deadline.signal, this.#control);
      onSent?.();
      answer = await sent.catch((err: unknown) =>
        // A kept-alive socket the runner closed just now: once more on a new connection (same spec: idempotent).
        deadline.signal.aborted || !this.alive
          ? Promise.reject(err)
          : this.#post("POST", "/specialize", JSON.stringify(spec), deadline.signal, false),
      );
    } catch (err) {
      if (deadline.signal.aborted) throw this.#loadTimedOut(spec, timeoutMs);
      throw err;
    } finally {
      clearTimeout(timer);
    }
    const { status, body } = answer;
    if (status !== 200) {
      const parsed = safeJson(body);
      const err = parseErrorBody(parsed);
      if (isLoadTimeout(parsed)) throw this.#loadTimedOut(spec, timeoutMs);
      const message = err?.message ?? body.slice(0, 500);
      if (status === 400)
        throw new FaasError("FUNCTION_LOAD_FAILED", `${spec.name}: the code failed to load: ${message}`);
      throw new FaasError("SCALE_UP_FAILED", `${spec.name}: runner refused to specialize (${status}): ${message}`);
    }
    this.state = "specialized";
    this.fn = spec.name;
    this.codeHash = hash;
    const loadMs = (safeJson(body) as { loadMs?: unknown } | undefined)?.loadMs;
    return { totalMs: performance.now() - started, importMs: typeof loadMs === "number" ? loadMs : Number.NaN };
  }

  #loadTimedOut(spec: LoadSpec, timeoutMs: number): FaasError {
    this.kill();
    return new FaasError(
      "FUNCTION_LOAD_FAILED",
      `${spec.name}: the code did not finish loading within ${timeoutMs} ms (does its module run forever at import?); ` +
        `its runner (pid ${this.pid}) was killed`,
      { details: { function: spec.name, loadTimeoutMs: timeoutMs } },
    );
  }

  /** SIGKILL to the runner's process group (it leads one): the runner and anything its code started. */
  kill(): void {
    this.stopRequested = true;
    if (this.exitInfo === undefined) killGroup(this.child);
  }

  /** Opens or refreshes the control connection (`GET /healthz`); false if the runner did not answer. */
  async ping(): Promise<boolean> {
    try {
      const { status } = await this.#post(
        "GET",
        "/healthz",
        "",
        AbortSignal.timeout(this.limits.loadTimeoutMs),
        this.#control,
      );
      return status === 200;
    } catch {
      return false;
    }
  }

  #post(
    method: string,
    path: string,
    payload: string,
    signal: AbortSignal,
    agent: Agent | false,
  ): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: "127.0.0.1",
          port: this.port,
          method,
          path,
          headers: { "content-type": "application/json", "content-length": Buffer.byteLength(payload) },
          agent,
          signal,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
          res.on("error", reject);
        },
      );
      req.on("error", (cause) =>
        reject(new FaasError("SCALE_UP_FAILED", `runner ${this.id} unreachable: ${cause.message}`, { cause })),
      );
      req.end(payload);
    });
  }

  /** SIGTERM (the runner drains), SIGKILL after `graceMs`. */
  async stop(graceMs: number): Promise<RunnerExit> {
    if (this.exitInfo !== undefined) return this.exitInfo;
    this.stopRequested = true;
    this.state = "stopping";
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => killGroup(this.child), graceMs);
    const info = await this.exited;
    clearTimeout(timer);
    return info;
  }
}

/** Past the load timeout the runner answers by itself; the supervisor waits this much longer. */
const LOAD_GRACE_MS = 1000;

function killGroup(child: ChildProcess): void {
  const pid = child.pid;
  if (pid === undefined) return;
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    child.kill("SIGKILL");
  }
}

/** The runner's own answer to a load past its FAAS_LOAD_TIMEOUT_MS (docs/runner-protocol.md). */
function isLoadTimeout(body: unknown): boolean {
  const err = (body as { error?: { loadTimeoutMs?: unknown } } | undefined)?.error;
  return typeof err?.loadTimeoutMs === "number";
}

function listeningPort(line: string): number | undefined {
  if (!line.startsWith("{") || !line.includes('"listening"')) return undefined;
  const msg = safeJson(line) as { event?: unknown; port?: unknown } | undefined;
  return msg?.event === "listening" && typeof msg.port === "number" ? msg.port : undefined;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
