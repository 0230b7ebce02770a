/**
 * The invocation path: `/invoke/<name>[/<rest>]` → a replica and back, streamed.
 * Warm requests take a replica synchronously; others park in the activator.
 * Connection failures that never reached a runner are retried on another
 * replica when the request has no body to replay.
 */
import { type ClientRequest, type IncomingMessage, request, type ServerResponse } from "node:http";
import { FaasError } from "@faas/api";
import type { Logger } from "pino";
import type { Activator } from "./activator.js";
import { checkApiKey } from "./api-key-check.js";
import { type ColdStep, type KeyLookup, LoadSuperseded } from "./backend.js";
import type { GatewayConfig } from "./config.js";
import type { ColdEpisode, FunctionState, Lease, Slot } from "./function-state.js";
import { decodePathSegment, sendError, sendInternalError } from "./http-util.js";

const PREFIX = "/invoke/";
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]);
const MAX_ATTEMPTS = 3;
/** Extra time past a function's own timeout before the gateway gives up on a runner. */
const UPSTREAM_GRACE_MS = 5_000;
/** `<function> <ms>`: sent to a replica still loading, which holds the request until loaded (docs/runner-protocol.md). */
const AWAIT_LOAD_HEADER = "x-faas-await-load";
/** On a held invocation's answer: the runner's load time (docs/runner-protocol.md); the gateway's, not the client's. */
const LOAD_MS_HEADER = "x-faas-load-ms";

interface Call {
  readonly state: FunctionState;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly path: string;
  readonly startedAt: number;
  readonly hasBody: boolean;
  parkedMs: number;
  episode: ColdEpisode | undefined;
  /** When the request parked, its wait for a replica ends at the latest (its park budget). */
  parkDeadline: number;
  parkBudgetMs: number;
  /**
   * Set while this attempt went to a replica still loading (it waits there for
   * the load): the backend's promise of that load.
   */
  early: Promise<void> | undefined;
  attempts: number;
  done: boolean;
  /** The capacity this attempt holds; released in #endAttempt only. */
  lease: Lease | undefined;
  /** The request to the runner while one is open, and when to give up on it. */
  upstream: ClientRequest | undefined;
  deadline: number;
  /** Position in Invoker.#active (-1 when not there). */
  activeIndex: number;
}

export class Invoker {
  /**
   * Calls with an open upstream request. An array with swap-remove, not a Map:
   * hashing ClientRequest objects as Map keys cost ~20 µs a request in V8.
   */
  readonly #active: Call[] = [];
  readonly #sweeper: NodeJS.Timeout;

  constructor(
    private readonly activator: Activator,
    private readonly cfg: GatewayConfig,
    private readonly log: Logger,
    private readonly keys: KeyLookup | undefined,
  ) {
    this.#sweeper = setInterval(() => {
      try {
        this.#sweep();
      } catch (err) {
        this.log.error({ err }, "internal error in the timeout sweep");
      }
    }, 1000);
    this.#sweeper.unref();
  }

  close(): void {
    clearInterval(this.#sweeper);
  }

  static matches(url: string): boolean {
    return url.startsWith(PREFIX);
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url as string;
    let end = PREFIX.length;
    while (end < url.length) {
      const c = url.charCodeAt(end);
      if (c === 47 /* / */ || c === 63 /* ? */) break;
      end++;
    }
    let name: string;
    try {
      name = decodePathSegment(url.slice(PREFIX.length, end), "function name");
    } catch (err) {
      req.resume();
      sendError(res, err);
      return;
    }
    let state: FunctionState | undefined;
    // `/invoke/<namespace>/<name>`: a function of another namespace the backend serves. A
    // default-namespace function of that name, called with a sub-path, is the fallback.
    if (url.charCodeAt(end) === 47 /* / */ && this.activator.servesNamespace(name)) {
      let end2 = end + 1;
      while (end2 < url.length) {
        const c = url.charCodeAt(end2);
        if (c === 47 /* / */ || c === 63 /* ? */) break;
        end2++;
      }
      let inner: string | undefined;
      try {
        inner = decodePathSegment(url.slice(end + 1, end2), "function name");
      } catch {
        inner = undefined;
      }
      state = inner === undefined || inner === "" ? undefined : this.activator.state(`${name}/${inner}`);
      if (state !== undefined) {
        name = `${name}/${inner}`;
        end = end2;
      }
    }
    state ??= this.activator.state(name);
    if (state === undefined) {
      req.resume();
      sendError(
        res,
        new FaasError("FUNCTION_NOT_FOUND", `no function named "${name}"; \`faas list\` shows what is deployed`),
      );
      return;
    }
    if (state.resource.spec.auth !== "none" && !this.#authorized(name, req, res)) return;
    const h = req.headers;
    const length = h["content-length"];
    if (length !== undefined && Number(length) > this.cfg.maxBodyBytes) {
      this.#refuseBody(res, Number(length));
      return;
    }
    const call: Call = {
      state,
      req,
      res,
      path: `/invoke${url.slice(end)}`,
      startedAt: performance.now(),
      hasBody: (length !== undefined && length !== "0") || h["transfer-encoding"] !== undefined,
      parkedMs: 0,
      episode: undefined,
      parkDeadline: 0,
      parkBudgetMs: 0,
      early: undefined,
      attempts: 0,
      done: false,
      lease: undefined,
      upstream: undefined,
      deadline: 0,
      activeIndex: -1,
    };
    state.touch(call.startedAt);
    this.#dispatch(call);
  }

  /** `spec.auth: apiKey`: 401 without a key, 403 with a key that is not this function's. */
  #authorized(fn: string, req: IncomingMessage, res: ServerResponse): boolean {
    try {
      checkApiKey(fn, req.headers, this.keys);
      return true;
    } catch (err) {
      // Anything but a refusal is a bug: the gateway's edge logs it and answers INTERNAL.
      if (!(err instanceof FaasError)) throw err;
      req.resume();
      this.activator.metrics.authRefusals.inc({ function: fn, code: err.code });
      sendError(res, err, err.code === "UNAUTHORIZED" ? { "www-authenticate": 'Bearer realm="faas"' } : undefined);
      return false;
    }
  }

  #refuseBody(res: ServerResponse, size: number): void {
    sendError(
      res,
      new FaasError("BODY_TOO_LARGE", `request body of ${size} bytes exceeds the ${this.cfg.maxBodyBytes}-byte limit`),
      { connection: "close" },
    );
  }

  /** Warm: a replica with room now. Otherwise the request parks. */
  #dispatch(call: Call): void {
    const lease = call.state.tryAcquire();
    if (lease !== undefined) this.#forward(call, lease);
    else this.#park(call);
  }

  #park(call: Call): void {
    const { state, res } = call;
    let parked: ReturnType<Activator["park"]>;
    try {
      call.parkBudgetMs = parkBudget(call.req, this.cfg.parkTimeoutMs);
      call.parkDeadline = performance.now() + call.parkBudgetMs;
      parked = this.activator.park(state, call.parkBudgetMs);
    } catch (err) {
      this.#fail(call, err);
      return;
    }
    const onClose = (): void =>
      parked.cancel(new FaasError("BAD_REQUEST", "client closed the connection while parked"));
    res.once("close", onClose);
    parked.promise
      .then(
        (lease) => {
          res.off("close", onClose);
          this.#forward(call, lease);
        },
        (err: unknown) => {
          res.off("close", onClose);
          if (!res.destroyed) this.#fail(call, err);
        },
      )
      .catch((err: unknown) => this.#internal(call, err));
  }

  /** One attempt on one replica: the upstream request, its answer or failure, the client going away. */
  #forward(call: Call, lease: Lease): void {
    call.lease = lease;
    call.early = lease.slot.loading;
    if (lease.timings !== undefined) {
      // Sent to a loading replica, the request waits there: its parked time is counted when the answer comes.
      if (call.early === undefined) call.parkedMs += lease.timings.parkedMs;
      call.episode ??= lease.timings.episode;
    }
    const upstream = this.#openUpstream(call, lease);
    // A bug in an event handler fails this call, never the process.
    const guard =
      <A extends unknown[]>(fn: (...args: A) => void) =>
      (...args: A): void => {
        try {
          fn(...args);
        } catch (err) {
          upstream.destroy();
          this.#endAttempt(call);
          this.#internal(call, err);
        }
      };
    upstream.on(
      "response",
      guard((ures: IncomingMessage) => this.#relayResponse(call, lease, ures)),
    );
    upstream.on(
      "error",
      guard((err: NodeJS.ErrnoException) => this.#upstreamFailed(call, lease, err)),
    );
    call.res.once(
      "close",
      guard(() => {
        if (call.res.writableFinished) return;
        upstream.destroy();
        this.#endAttempt(call);
        this.#record(call, 499);
      }),
    );
    this.#sendBody(call, upstream);
  }

  #openUpstream(call: Call, lease: Lease): ClientRequest {
    const { req, state } = call;
    const headers = req.headers;
    // Hop-by-hop headers stay between client and gateway; `delete` only when present
    // (deleting turns V8 objects into slower dictionaries).
    if (headers.connection !== undefined) delete headers.connection;
    if (headers["keep-alive"] !== undefined) delete headers["keep-alive"];
    // Trailers are not forwarded, and node:http throws on a `trailer` header without chunked coding.
    if (headers.trailer !== undefined) delete headers.trailer;
    // The client's expectation was node's to meet (it answers 100-continue itself); a runner
    // refusing one (417) while the body streams in would look like a crash (EPIPE → 502).
    if (headers.expect !== undefined) delete headers.expect;
    // Transfer-Encoding is hop-by-hop: the body node decoded goes on plain chunked, so a runner
    // never sees codings node let through before the final "chunked" ("x, chunked").
    if (headers["transfer-encoding"] !== undefined) headers["transfer-encoding"] = "chunked";
    if (call.early !== undefined) {
      // The replica holds it until loaded, for no longer than the request may wait for a replica.
      const waitMs = Math.max(1, Math.ceil(call.parkDeadline - performance.now()));
      headers[AWAIT_LOAD_HEADER] = `${state.name} ${waitMs}`;
    } else if (headers[AWAIT_LOAD_HEADER] !== undefined) {
      delete headers[AWAIT_LOAD_HEADER]; // the runner's header, not a client's
    }
    const slot = lease.slot;
    const upstream = request({
      host: slot.host,
      port: slot.port,
      method: req.method,
      path: call.path,
      headers,
      agent: slot.agent,
    });
    call.upstream = upstream;
    call.deadline = performance.now() + state.resource.spec.timeoutSeconds * 1000 + UPSTREAM_GRACE_MS;
    call.activeIndex = this.#active.length;
    this.#active.push(call);
    return upstream;
  }

  #sendBody(call: Call, upstream: ClientRequest): void {
    if (!call.hasBody) upstream.end();
    else if (call.req.headers["content-length"] !== undefined) call.req.pipe(upstream);
    else this.#pipeLimited(call.req, upstream);
  }

  #relayResponse(call: Call, lease: Lease, ures: IncomingMessage): void {
    const { res, state } = call;
    const status = ures.statusCode ?? 502;
    const raw = ures.rawHeaders;
    const out: string[] = [];
    let runnerState: string | undefined;
    let loadMs: number | undefined;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i] as string;
      if (name.length === 10) {
        const lower = name.toLowerCase();
        if (lower === "connection" || lower === "keep-alive") continue;
      } else if (name.length === 14 && name.toLowerCase() === LOAD_MS_HEADER) {
        loadMs = parseLoadMs(raw[i + 1] as string);
        continue;
      } else if (name.length === 19 && name.toLowerCase() === "x-faas-runner-state") {
        runnerState = raw[i + 1];
        if (runnerState === "draining") this.activator.replicaFailed(state, lease.slot, "draining");
      }
      out.push(name, raw[i + 1] as string);
    }
    const early = call.early;
    if (early !== undefined) {
      if (status === 503 && runnerState !== undefined) {
        // Not run (the load failed, or took longer than the request may wait): not the client's answer.
        ures.resume();
        this.#endAttempt(call);
        this.#earlyRefused(call, early);
        return;
      }
      const t = lease.timings;
      if (t !== undefined) call.parkedMs += (lease.slot.readyAt ?? performance.now()) - t.parkedAt;
    }
    const episode = call.episode;
    if (episode !== undefined) {
      // The answer of a replica that was loading usually comes before the backend has reported the load
      // (the runner answers it first): relayed at once, with the steps as the replica's side saw them.
      const steps = episode.steps ?? (early !== undefined ? earlySteps(lease.slot, loadMs) : undefined);
      out.push("x-faas-cold-start", "true", "server-timing", serverTiming(call.parkedMs, steps));
    } else if (call.parkedMs > 0) {
      out.push("server-timing", `parked;dur=${call.parkedMs.toFixed(2)}`);
    }
    res.writeHead(status, out);
    ures.pipe(res);
    ures.once("end", () => {
      this.#endAttempt(call);
      this.#record(call, status);
    });
    ures.once("error", () => {
      this.#endAttempt(call);
      res.destroy();
      this.#record(call, 502);
    });
  }

  #upstreamFailed(call: Call, lease: Lease, err: NodeJS.ErrnoException): void {
    const { req, res, state } = call;
    this.#endAttempt(call);
    if (call.done) return;
    if (res.headersSent) {
      res.destroy();
      this.#record(call, 502);
      return;
    }
    if (err instanceof FaasError) {
      this.#fail(call, err, err.code === "BODY_TOO_LARGE" ? { connection: "close" } : undefined);
      return;
    }
    const early = call.early;
    if (early !== undefined) {
      // A replica that was loading went away (a load past its timeout is killed): the load says why.
      call.early = undefined;
      void early.then(
        () => this.#upstreamFailed(call, lease, err),
        () => this.#earlyRefused(call, early),
      );
      return;
    }
    const refused = err.code === "ECONNREFUSED";
    this.activator.replicaFailed(state, lease.slot, err.code ?? "error");
    const retryable = !call.hasBody && (refused || IDEMPOTENT.has(req.method ?? ""));
    if (retryable && ++call.attempts < MAX_ATTEMPTS && !res.destroyed) {
      this.activator.metrics.retries.inc({ function: state.name });
      this.log.debug({ fn: state.name, err: err.code }, "retrying on another replica");
      this.#dispatch(call);
      return;
    }
    this.#fail(
      call,
      refused
        ? new FaasError("RUNNER_UNAVAILABLE", `no runner of ${state.name} accepted the connection; retry`)
        : new FaasError(
            "RUNNER_CRASHED",
            `the runner of ${state.name} closed the connection before answering (${err.code ?? err.message}); the request may have partly run`,
          ),
    );
  }

  /**
   * A request sent to a loading replica came back unanswered: the load failed
   * (its callers get the load's error, as parked ones do), took longer than
   * the request may wait (DEADLINE_EXCEEDED), finished, or was superseded by
   * new code (sent again: to a ready replica, or parked).
   */
  #earlyRefused(call: Call, loaded: Promise<void>): void {
    call.early = undefined;
    const { state } = call;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<"expired">((resolve) => {
      timer = setTimeout(() => resolve("expired"), Math.max(0, call.parkDeadline - performance.now()));
    });
    const outcome = loaded.then(
      () => "loaded" as const,
      (err: unknown) => err,
    );
    void Promise.race([outcome, expired])
      .then((result) => {
        clearTimeout(timer);
        if (call.done || call.res.destroyed) return;
        if (result === "loaded" || result instanceof LoadSuperseded) {
          if (++call.attempts < MAX_ATTEMPTS) this.#dispatch(call);
          else
            this.#fail(call, new FaasError("RUNNER_UNAVAILABLE", `no runner of ${state.name} took the request; retry`));
        } else if (result === "expired") {
          this.activator.metrics.parkRejections.inc({ function: state.name, reason: "deadline" });
          this.#fail(
            call,
            new FaasError(
              "DEADLINE_EXCEEDED",
              `waited ${call.parkBudgetMs} ms for a replica of ${state.name}: no replica became ready`,
            ),
          );
        } else {
          this.activator.metrics.parkRejections.inc({ function: state.name, reason: "scale_up_failed" });
          this.#fail(
            call,
            result instanceof FaasError
              ? result
              : new FaasError("SCALE_UP_FAILED", `could not start ${state.name}: ${String(result)}`, { cause: result }),
          );
        }
      })
      .catch((err: unknown) => this.#internal(call, err));
  }

  /** The one place an attempt's capacity is given back (the lease makes a second call a no-op). */
  #endAttempt(call: Call): void {
    this.#untrack(call);
    call.lease?.release();
  }

  /**
   * Backstop for a runner that never answers (its own timeout normally answers
   * 504 first): one sweep a second instead of a timer per request.
   */
  #sweep(): void {
    const now = performance.now();
    for (const call of [...this.#active]) {
      if (call.deadline > now || call.upstream === undefined) continue;
      const upstream = call.upstream;
      this.#untrack(call);
      const spec = call.state.resource.spec;
      upstream.destroy(
        new FaasError("HANDLER_TIMEOUT", `function ${call.state.name} did not answer within ${spec.timeoutSeconds} s`),
      );
    }
  }

  #untrack(call: Call): void {
    const i = call.activeIndex;
    if (i < 0) return;
    const last = this.#active.pop() as Call;
    if (last !== call) {
      this.#active[i] = last;
      last.activeIndex = i;
    }
    call.activeIndex = -1;
    call.upstream = undefined;
  }

  /** Streams a body of unknown length, cutting it off past the limit. */
  #pipeLimited(req: IncomingMessage, upstream: ReturnType<typeof request>): void {
    let size = 0;
    const limit = this.cfg.maxBodyBytes;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.pause();
        upstream.destroy(new FaasError("BODY_TOO_LARGE", `request body exceeds the ${limit}-byte limit`));
        return;
      }
      if (!upstream.write(chunk)) {
        req.pause();
        upstream.once("drain", () => req.resume());
      }
    });
    req.once("end", () => upstream.end());
  }

  #fail(call: Call, err: unknown, headers?: Record<string, string>): void {
    if (call.done) return;
    sendError(call.res, err, headers);
    this.#record(call, call.res.statusCode);
  }

  /** An unexpected error on this call's path: 500 INTERNAL with a logged request id. */
  #internal(call: Call, err: unknown): void {
    sendInternalError(this.log, call.req, call.res, err);
    this.#record(call, 500);
  }

  #record(call: Call, status: number): void {
    if (call.done) return;
    call.done = true;
    const now = performance.now();
    call.state.touch(now);
    call.state.telemetry.observe(status, now - call.startedAt);
  }
}

/**
 * `parked` then the backend's steps. The steps are known once the backend's
 * scale-up has resolved, which is normally before the runner answers; if it
 * has not (a backend that announces the replica long before it resolves), the
 * header says so instead of guessing.
 */
function serverTiming(parkedMs: number, steps: readonly ColdStep[] | undefined): string {
  let out = `parked;dur=${parkedMs.toFixed(2)}`;
  if (steps === undefined) return `${out}, scaleup;desc="pending"`;
  for (const s of steps) out += `, ${s.name};dur=${s.ms.toFixed(2)}`;
  return out;
}

/**
 * A cold start's steps for the first answer of a replica that was loading, before the backend's
 * own report: those the backend gave with the replica (`endpointLoading`, e.g. the claim),
 * `specialize` from then until this answer, and `import` as the runner said (`x-faas-load-ms`).
 */
function earlySteps(slot: Slot, loadMs: number | undefined): ColdStep[] {
  const steps = [...(slot.loadingSteps ?? [])];
  if (slot.loadingSince !== undefined) steps.push({ name: "specialize", ms: performance.now() - slot.loadingSince });
  if (loadMs !== undefined) steps.push({ name: "import", ms: loadMs });
  return steps;
}

/** `x-faas-load-ms`: a runner's load time in ms, a plain non-negative decimal; anything else is ignored. */
export function parseLoadMs(value: string): number | undefined {
  if (!/^\d{1,9}(\.\d{1,6})?$/.test(value)) return undefined;
  return Number(value);
}

/** A client may ask to wait less than the gateway's limit: `x-faas-deadline-ms`. */
function parkBudget(req: IncomingMessage, maxMs: number): number {
  const raw = req.headers["x-faas-deadline-ms"];
  if (typeof raw !== "string") return maxMs;
  const ms = Number(raw);
  return Number.isFinite(ms) && ms > 0 ? Math.min(ms, maxMs) : maxMs;
}
