/**
 * Owns the function this runner has become: writing its module to a private
 * directory, the current handler worker, and replacing that worker when a call
 * times out or the thread dies. While generic it keeps one worker started, so
 * specializing costs only the module's import.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describeThrown, RunnerError } from "./errors.js";
import {
  type CallDone,
  type CallMessage,
  FunctionWorker,
  LoadTimeoutError,
  type WorkerEvents,
} from "./function-worker.js";
import { type LoadPackage, type LoadSpec, parseHandler, sameFunction } from "./load-spec.js";
import type { Logger } from "./log.js";
import {
  DEFAULT_PACKAGE_MAX_BYTES,
  DEFAULT_PACKAGE_PULL_TIMEOUT_MS,
  PackageError,
  type PullOptions,
  packageRoot,
} from "./package-root.js";

/** How long a worker whose call timed out has to show its event loop is alive. */
const LIVENESS_PROBE_MS = 200;
/** A worker that crashes sooner than this after starting is replaced lazily, by the next call. */
const CRASH_LOOP_WINDOW_MS = 1000;

interface Loaded {
  spec: LoadSpec;
  url: string;
  exportName: string;
  timeoutMs: number;
  /** The module written for inline code; undefined for a package. */
  file: string | undefined;
  loadMs: number;
}

export type HostState = "generic" | "loading" | "ready";

export class FunctionHost implements WorkerEvents {
  #current: FunctionWorker | undefined;
  /** Workers replaced after a timeout, finishing the calls they still hold. */
  readonly #retired = new Set<FunctionWorker>();
  #loading: { spec: LoadSpec; done: Promise<number> } | undefined;
  #loaded: Loaded | undefined;
  /** Why the last load failed, for the invocations that waited on it. */
  #loadError: string | undefined;
  /** The worker that has been asked to import the code being loaded (after a package pull, if any). */
  #importing: FunctionWorker | undefined;
  /** Invocations waiting, while generic, for a load to start (`awaitLoad` with a wait). */
  #loadStarted: Array<() => void> = [];
  #closed = false;
  /** Private directory for the module, made once at start so specializing only writes a file. */
  readonly #dir = mkdtempSync(join(tmpdir(), "faas-fn-"));
  #loadStartedAt = 0;

  constructor(
    private readonly log: Logger,
    private readonly loadTimeoutMs: number,
    /** Warm the first worker up (a generic runner); false when the code comes with the start. */
    private readonly warmUp = true,
    /** Where and how packages are pulled (docs/packages.md). */
    private readonly pullOptions: PullOptions = {
      cacheDir: join(tmpdir(), "faas-packages"),
      maxBytes: DEFAULT_PACKAGE_MAX_BYTES,
      timeoutMs: DEFAULT_PACKAGE_PULL_TIMEOUT_MS,
    },
  ) {
    this.#current = this.#startWorker();
  }

  get state(): HostState {
    if (this.#loaded) return "ready";
    return this.#loading ? "loading" : "generic";
  }

  get functionName(): string | undefined {
    return this.#loaded?.spec.name ?? this.#loading?.spec.name;
  }

  /** Becomes `spec`'s function; resolves to the load time in ms. Idempotent for the same function. */
  specialize(spec: LoadSpec): Promise<number> {
    const current = this.#loaded?.spec ?? this.#loading?.spec;
    if (current) {
      if (sameFunction(current, spec)) return this.#loading?.done ?? Promise.resolve(this.#loaded?.loadMs ?? 0);
      return Promise.reject(
        new RunnerError(
          "CONFLICT",
          `runner is already specialized as "${current.name}" with different code or config`,
          {
            function: current.name,
          },
        ),
      );
    }
    this.#loadError = undefined;
    const done = this.#load(spec)
      .catch((err: unknown) => {
        // The same reason as the POST /specialize answer (a package that could not be had fails here first).
        this.#loadError ??= `the load failed: ${err instanceof Error ? err.message : String(err)}`;
        throw err;
      })
      .finally(() => {
        this.#loading = undefined;
      });
    this.#loading = { spec, done };
    const started = this.#loadStarted;
    this.#loadStarted = [];
    for (const resolve of started) resolve();
    return done;
  }

  /**
   * For an invocation that found no function: given `awaited`
   * (x-faas-await-load), waits up to `awaited.ms` for a load of `awaited.fn`
   * to start. Resolves to undefined when that function is loading or loaded
   * (then `invokeWhenLoaded`), else to why not.
   */
  async awaitLoadStart(awaited: { fn: string; ms: number } | undefined): Promise<string | undefined> {
    if (!this.#loaded && !this.#loading) {
      if (awaited === undefined) return this.#loadError ?? "runner has no function loaded; POST /specialize first";
      let timer: NodeJS.Timeout | undefined;
      let resolveStarted!: () => void;
      const started = new Promise<"started">((resolve) => {
        resolveStarted = () => resolve("started");
      });
      this.#loadStarted.push(resolveStarted);
      const expired = new Promise<"expired">((resolve) => {
        timer = setTimeout(() => resolve("expired"), awaited.ms);
      });
      const outcome = await Promise.race([started, expired]);
      clearTimeout(timer);
      if (outcome === "expired") {
        this.#loadStarted = this.#loadStarted.filter((r) => r !== resolveStarted);
        return `runner has no function: none was loaded within ${awaited.ms} ms`;
      }
    }
    const name = this.functionName;
    if (awaited !== undefined && name !== awaited.fn)
      return `runner is ${this.#loaded ? "specialized as" : "loading"} ${name}, not ${awaited.fn}`;
    return undefined;
  }

  /**
   * Runs a call now if loaded; during a load, hands it to the worker that is
   * importing the code, which runs it once the import is done (its timeout
   * counts from then). A load that fails answers it RUNNER_NOT_SPECIALIZED
   * with the reason.
   */
  invokeWhenLoaded(call: Omit<CallMessage, "t" | "id">, answer: CallDone): void {
    // Its answer says how long the load took (x-faas-load-ms): it may reach the caller before /specialize's.
    const done: CallDone = (outcome) =>
      answer(
        outcome instanceof RunnerError
          ? outcome
          : { ...outcome, headers: [...outcome.headers, LOAD_MS_HEADER, String(roundMs(this.#loadMsSoFar()))] },
      );
    const loading = this.#loading;
    const worker = this.#current;
    if (this.#loaded || !loading || !worker || worker.ended) {
      if (!this.#loaded && this.#loadError !== undefined)
        done(new RunnerError("RUNNER_NOT_SPECIALIZED", this.#loadError));
      else this.invoke(call, done);
      return;
    }
    if (this.#importing !== worker) {
      // Not importing yet (a package is still being pulled): the call waits here for the load.
      loading.done.then(
        () => this.invoke(call, done),
        () => done(new RunnerError("RUNNER_NOT_SPECIALIZED", this.#loadError ?? "the load failed")),
      );
      return;
    }
    const held: CallDone = (outcome) => {
      if (!(outcome instanceof RunnerError) || worker.loaded) {
        done(outcome);
        return;
      }
      // The thread ended before the import was done (the import failed, or crashed it): the load's own reason.
      void loading.done.then(
        () => done(outcome),
        () => done(new RunnerError("RUNNER_NOT_SPECIALIZED", this.#loadError ?? "the load failed")),
      );
    };
    worker.call(call, loading.spec.timeoutSeconds * 1000, held, loading.done);
  }

  invoke(call: Omit<CallMessage, "t" | "id">, done: CallDone): void {
    const loaded = this.#loaded;
    if (!loaded) {
      done(new RunnerError("RUNNER_NOT_SPECIALIZED", "runner has no function loaded; POST /specialize first"));
      return;
    }
    let worker = this.#current;
    if (!worker || worker.ended) {
      worker = this.#startWorker();
      this.#loadInto(worker, loaded);
    }
    worker.call(call, loaded.timeoutMs, done);
  }

  /** Terminates every worker and removes the module directory. */
  async close(): Promise<void> {
    this.#closed = true;
    const stopped = new RunnerError("RUNNER_DRAINING", "runner is shutting down", { function: this.functionName });
    for (const w of [this.#current, ...this.#retired]) w?.terminate(stopped);
    this.#current = undefined;
    this.#retired.clear();
    rmSync(this.#dir, { recursive: true, force: true });
  }

  /** The load's time: its loadMs once loaded; until then, the time since it started (the import is done when a held call answers). */
  #loadMsSoFar(): number {
    return this.#loaded?.loadMs ?? performance.now() - this.#loadStartedAt;
  }

  async #load(spec: LoadSpec): Promise<number> {
    const started = performance.now();
    this.#loadStartedAt = started;
    const { module, exportName } = parseHandler(spec.handler);
    let file: string | undefined;
    let url: string;
    if (spec.package !== undefined) {
      // The pull is not part of the load timeout: it has its own deadline (FAAS_PACKAGE_PULL_TIMEOUT_MS).
      const root = await this.#packageRoot(spec.name, spec.package);
      url = pathToFileURL(join(root, `${module}.mjs`)).href;
    } else {
      // Written by the worker, right before its import: this thread goes on to the requests sent
      // behind the load (a held invocation then reaches the worker while it imports).
      file = join(this.#dir, `${module}.mjs`);
      url = pathToFileURL(file).href;
    }
    // Applied before the import, as the protocol says; workers share this env (SHARE_ENV).
    Object.assign(process.env, spec.env);
    const loaded: Loaded = {
      spec,
      url,
      exportName,
      timeoutMs: spec.timeoutSeconds * 1000,
      file,
      loadMs: 0,
    };
    const worker = this.#current && !this.#current.ended ? this.#current : this.#startWorker();
    this.#current = worker;
    this.#importing = worker;
    try {
      await worker.load(loaded.url, exportName, this.loadTimeoutMs, file === undefined ? undefined : (spec.code ?? ""));
    } catch (err) {
      // 400, not the catalogue's 500: to /specialize's caller the spec is what is wrong (docs/runner-protocol.md).
      const failed =
        err instanceof LoadTimeoutError
          ? new RunnerError(
              "FUNCTION_LOAD_FAILED",
              `code did not finish loading within ${err.timeoutMs} ms`,
              { function: spec.name, loadTimeoutMs: err.timeoutMs },
              { status: 400 },
            )
          : new RunnerError(
              "FUNCTION_LOAD_FAILED",
              `code failed to load: ${(err as Error).message}`,
              { function: spec.name },
              { status: 400 },
            );
      this.#loadError = `the load failed: ${failed.message}`;
      this.#importing = undefined;
      // The failed import may have run top-level code: start clean for the next spec. Calls it held get the reason.
      worker.terminate(new RunnerError("RUNNER_NOT_SPECIALIZED", this.#loadError));
      // If the import crashed the thread, `crashed` has already started a replacement.
      if (this.#current === worker) this.#current = this.#startWorker();
      for (const key of Object.keys(spec.env)) delete process.env[key];
      if (file !== undefined) rmSync(file, { force: true });
      this.log.error("load-failed", { fn: spec.name, message: describeThrown(err), stack: (err as Error).stack });
      throw failed;
    }
    this.#importing = undefined;
    loaded.loadMs = performance.now() - started;
    this.#loaded = loaded;
    return loaded.loadMs;
  }

  async #packageRoot(name: string, pkg: LoadPackage): Promise<string> {
    try {
      return await packageRoot(pkg, this.pullOptions);
    } catch (err) {
      const message = err instanceof PackageError ? err.message : describeThrown(err);
      this.log.error("package-failed", { fn: name, message });
      throw new RunnerError("FUNCTION_LOAD_FAILED", message, { function: name }, { status: 400 });
    }
  }

  /** Resolves once the worker started with the runner has warmed up: then the runner says it is listening. */
  warm(): Promise<void> {
    return this.#current?.warm ?? Promise.resolve();
  }

  #startWorker(): FunctionWorker {
    // Workers of a generic runner warm up; replacements for a loaded function load its code at once.
    const warmUp = this.warmUp && this.#loaded === undefined;
    return new FunctionWorker(this, () => this.functionName ?? "", { warmDir: this.#dir, warmUp });
  }

  /** Loads into a replacement worker; calls sent meanwhile wait inside the worker. */
  #loadInto(worker: FunctionWorker, loaded: Loaded): void {
    this.#current = worker;
    void worker.load(loaded.url, loaded.exportName, this.loadTimeoutMs).catch((err: unknown) => {
      this.log.error("reload-failed", { fn: loaded.spec.name, message: describeThrown(err) });
    });
  }

  #replaceCurrent(): void {
    if (this.#closed || !this.#loaded) return;
    this.#loadInto(this.#startWorker(), this.#loaded);
  }

  timedOut(worker: FunctionWorker): void {
    this.log.error("handler-timeout", { fn: this.functionName, timeoutSeconds: this.#loaded?.spec.timeoutSeconds });
    if (worker !== this.#current || this.#closed) return;
    // New calls go to a fresh worker at once; the old one may be spinning.
    this.#replaceCurrent();
    this.#retired.add(worker);
    void worker.ping(LIVENESS_PROBE_MS).then((alive) => {
      if (!alive) {
        this.log.error("worker-stuck", { fn: this.functionName, interrupted: worker.inFlight });
        this.#retire(worker, "its event loop is blocked (a handler ran past timeoutSeconds and does not yield)");
      } else if (worker.inFlight === 0) {
        this.#retire(worker, "idle");
      }
    });
  }

  idle(worker: FunctionWorker): void {
    if (this.#retired.has(worker)) this.#retire(worker, "idle");
  }

  crashed(worker: FunctionWorker, reason: string): void {
    this.#retired.delete(worker);
    if (worker !== this.#current) return;
    this.log.error("worker-crashed", { fn: this.functionName, reason });
    // A worker that died importing, or soon after, would likely die again: rather than
    // restart in a loop, start the next one when a call needs it.
    const shortLived = performance.now() - worker.startedAt < CRASH_LOOP_WINDOW_MS;
    if (this.#loaded) {
      if (worker.loaded && !shortLived) this.#replaceCurrent();
      else this.#current = undefined;
    } else if (!this.#closed) {
      this.#current = this.#startWorker();
    }
  }

  handlerThrew(message: string, stack: string | undefined): void {
    this.log.error("handler-error", { fn: this.functionName, message, stack });
  }

  #retire(worker: FunctionWorker, why: string): void {
    this.#retired.delete(worker);
    worker.terminate(
      new RunnerError(
        "RUNNER_UNAVAILABLE",
        `call interrupted: the worker thread running it was restarted because ${why}`,
        { function: this.functionName },
      ),
    );
  }
}

/** On the answer of an invocation that waited for the load (docs/runner-protocol.md). */
const LOAD_MS_HEADER = "x-faas-load-ms";

/** Milliseconds as the runner reports them (loadMs, x-faas-load-ms): two decimals. */
export function roundMs(ms: number): number {
  return Math.round(ms * 100) / 100;
}
