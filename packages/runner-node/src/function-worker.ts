/**
 * One handler worker thread, seen from the HTTP thread: sends it calls,
 * matches replies to callers, enforces each call's deadline and turns the
 * thread's death into errors for the calls it took with it.
 */
import { SHARE_ENV, Worker } from "node:worker_threads";
import { RunnerError } from "./errors.js";
import type { FromWorker, ToWorker, WorkerInit } from "./worker-protocol.js";

export type CallResult = Extract<FromWorker, { t: "result" }>;
/** Receives exactly one outcome per call. */
export type CallDone = (outcome: CallResult | RunnerError) => void;
export type CallMessage = Extract<ToWorker, { t: "call" }>;

interface Pending {
  done: CallDone;
  timer: NodeJS.Timeout | undefined;
}

export interface WorkerEvents {
  /** A call ran past its deadline; it has been answered already. */
  timedOut(worker: FunctionWorker): void;
  /** The thread ended without being asked to; its calls have been answered. */
  crashed(worker: FunctionWorker, reason: string): void;
  /** A call finished and the worker has nothing left in flight. */
  idle(worker: FunctionWorker): void;
  handlerThrew(message: string, stack: string | undefined): void;
}

/** The module's import did not finish in time (its top-level code may still be running). */
export class LoadTimeoutError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`the module did not finish loading within ${timeoutMs} ms`);
    this.name = "LoadTimeoutError";
  }
}

const WORKER_URL = new URL("./handler-worker.js", import.meta.url);

export class FunctionWorker {
  readonly #thread: Worker;
  readonly #pending = new Map<number, Pending>();
  readonly #pings = new Map<number, (alive: boolean) => void>();
  #nextId = 1;
  #ended = false;
  #loaded: { resolve(): void; reject(err: Error): void } | undefined;
  /** Set once the module loaded; a crash before that is a load failure, not a restartable crash. */
  loaded = false;
  readonly startedAt = performance.now();

  /** Resolves once the thread has warmed up (or ended). */
  readonly warm: Promise<void>;
  #warmed: (() => void) | undefined;

  constructor(
    private readonly events: WorkerEvents,
    private readonly fn: () => string,
    init: WorkerInit,
  ) {
    this.warm = new Promise((resolve) => {
      this.#warmed = resolve;
    });
    // SHARE_ENV: a pre-started worker still sees the spec's `env`, applied at specialization.
    this.#thread = new Worker(WORKER_URL, { env: SHARE_ENV, workerData: init });
    this.#thread.on("message", (msg: FromWorker) => this.#receive(msg));
    this.#thread.on("error", (err) => this.#end(`worker crashed: ${err.name}: ${err.message}`));
    this.#thread.on("exit", (code) => this.#end(`worker exited with code ${code}`));
  }

  get inFlight(): number {
    return this.#pending.size;
  }

  get ended(): boolean {
    return this.#ended;
  }

  /**
   * Imports the module (after writing `code` to its file, when given); rejects
   * with the import's error (or after `timeoutMs`).
   */
  load(url: string, exportName: string, timeoutMs: number, code?: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new LoadTimeoutError(timeoutMs)), timeoutMs);
      this.#loaded = {
        resolve: () => {
          clearTimeout(timer);
          this.loaded = true;
          resolve();
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      this.#post({ t: "load", url, exportName, code });
    });
  }

  /**
   * Sends a call; its deadline starts now, or once `startAfter` settles (a call
   * sent while the module still imports waits in the thread for the import).
   */
  call(msg: Omit<CallMessage, "t" | "id">, timeoutMs: number, done: CallDone, startAfter?: Promise<unknown>): void {
    if (this.#ended) {
      done(new RunnerError("RUNNER_UNAVAILABLE", "handler worker is gone", { function: this.fn() }));
      return;
    }
    const id = this.#nextId++;
    const pending: Pending = { done, timer: undefined };
    this.#pending.set(id, pending);
    const arm = (): void => {
      if (this.#pending.get(id) === pending) pending.timer = setTimeout(() => this.#timeOut(id, timeoutMs), timeoutMs);
    };
    if (startAfter === undefined) arm();
    else startAfter.then(arm, arm);
    const full: CallMessage = {
      t: "call",
      id,
      method: msg.method,
      path: msg.path,
      headers: msg.headers,
      body: msg.body,
    };
    this.#thread.postMessage(full, msg.body ? [msg.body] : undefined);
  }

  /** Resolves true if the thread's event loop answers within `timeoutMs`. */
  ping(timeoutMs: number): Promise<boolean> {
    if (this.#ended) return Promise.resolve(false);
    const id = this.#nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pings.delete(id);
        resolve(false);
      }, timeoutMs);
      this.#pings.set(id, (alive) => {
        clearTimeout(timer);
        resolve(alive);
      });
      this.#post({ t: "ping", id });
    });
  }

  /** Stops the thread (even one spinning in `while (true)`); in-flight calls get `error`. */
  terminate(error: RunnerError): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#failAll(error);
    void this.#thread.terminate();
  }

  #post(msg: ToWorker): void {
    this.#thread.postMessage(msg);
  }

  #receive(msg: FromWorker): void {
    switch (msg.t) {
      case "result":
        this.#settle(msg.id, msg);
        break;
      case "threw":
        this.events.handlerThrew(msg.message, msg.stack);
        this.#settle(msg.id, new RunnerError("HANDLER_ERROR", msg.message, { function: this.fn() }));
        break;
      case "pong":
        this.#pings.get(msg.id)?.(true);
        this.#pings.delete(msg.id);
        break;
      case "warm":
        this.#warmed?.();
        break;
      case "loaded":
        this.#loaded?.resolve();
        break;
      case "load-failed": {
        const err = new Error(msg.message);
        if (msg.stack) err.stack = msg.stack;
        this.#loaded?.reject(err);
        break;
      }
    }
  }

  #settle(id: number, outcome: CallResult | RunnerError): void {
    const pending = this.#pending.get(id);
    if (!pending) return; // already answered: it timed out
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    pending.done(outcome);
    if (this.#pending.size === 0) this.events.idle(this);
  }

  #timeOut(id: number, timeoutMs: number): void {
    const seconds = timeoutMs / 1000;
    this.#settle(
      id,
      new RunnerError("HANDLER_TIMEOUT", `handler did not finish within timeoutSeconds (${seconds} s)`, {
        function: this.fn(),
        timeoutSeconds: seconds,
      }),
    );
    this.events.timedOut(this);
  }

  #failAll(error: RunnerError): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) {
      clearTimeout(p.timer);
      p.done(error);
    }
    for (const resolve of this.#pings.values()) resolve(false);
    this.#pings.clear();
  }

  #end(reason: string): void {
    this.#warmed?.();
    if (this.#ended) return;
    this.#ended = true;
    this.#loaded?.reject(new Error(reason));
    this.#failAll(
      new RunnerError(
        "RUNNER_CRASHED",
        `the function's worker thread died while this call was in flight (${reason}); it is being restarted`,
        {
          function: this.fn(),
        },
      ),
    );
    this.events.crashed(this, reason);
  }
}
