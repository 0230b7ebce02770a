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
import type { GatewayConfig } from "./config.js";
import type { ColdEpisode, FunctionState, Slot } from "./function-state.js";
import { decodePathSegment, sendError, sendInternalError } from "./http-util.js";

const PREFIX = "/invoke/";
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]);
const MAX_ATTEMPTS = 3;
/** Extra time past a function's own timeout before the gateway gives up on a runner. */
const UPSTREAM_GRACE_MS = 5_000;

interface Call {
  readonly state: FunctionState;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly path: string;
  readonly startedAt: number;
  readonly hasBody: boolean;
  parkedMs: number;
  episode: ColdEpisode | undefined;
  attempts: number;
  done: boolean;
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
    const state = this.activator.state(name);
    if (state === undefined) {
      req.resume();
      sendError(
        res,
        new FaasError("FUNCTION_NOT_FOUND", `no function named "${name}"; \`faas list\` shows what is deployed`),
      );
      return;
    }
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
      attempts: 0,
      done: false,
      upstream: undefined,
      deadline: 0,
      activeIndex: -1,
    };
    state.lastActivityMs = call.startedAt;
    this.#dispatch(call);
  }

  #refuseBody(res: ServerResponse, size: number): void {
    sendError(
      res,
      new FaasError("BODY_TOO_LARGE", `request body of ${size} bytes exceeds the ${this.cfg.maxBodyBytes}-byte limit`),
      { connection: "close" },
    );
  }

  #dispatch(call: Call): void {
    const slot = call.state.tryAcquire();
    if (slot !== undefined) this.#forward(call, slot);
    else this.#park(call);
  }

  #park(call: Call): void {
    const { state, res } = call;
    const budget = parkBudget(call.req, this.cfg.parkTimeoutMs);
    let parked: ReturnType<Activator["park"]>;
    try {
      parked = this.activator.park(state, budget);
    } catch (err) {
      this.#fail(call, err);
      return;
    }
    const onClose = (): void => this.activator.unpark(state, parked.waiter);
    res.once("close", onClose);
    const parkedAt = parked.waiter.parkedAt;
    call.episode ??= parked.waiter.episode;
    parked.promise
      .then(
        (slot) => {
          res.off("close", onClose);
          call.parkedMs += performance.now() - parkedAt;
          this.#forward(call, slot);
        },
        (err: unknown) => {
          res.off("close", onClose);
          if (!res.destroyed) this.#fail(call, err);
        },
      )
      .catch((err: unknown) => this.#internal(call, err));
  }

  #forward(call: Call, slot: Slot): void {
    const { state, req, res } = call;
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
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      this.#untrack(call);
      state.release(slot);
    };
    // A bug in an event handler fails this call, never the process.
    const guard =
      <A extends unknown[]>(fn: (...args: A) => void) =>
      (...args: A): void => {
        try {
          fn(...args);
        } catch (err) {
          release();
          upstream.destroy();
          this.#internal(call, err);
        }
      };
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
    upstream.on(
      "response",
      guard((ures: IncomingMessage) => {
        const status = ures.statusCode ?? 502;
        const raw = ures.rawHeaders;
        const out: string[] = [];
        for (let i = 0; i < raw.length; i += 2) {
          const name = raw[i] as string;
          if (name.length === 10) {
            const lower = name.toLowerCase();
            if (lower === "connection" || lower === "keep-alive") continue;
          } else if (name.length === 19 && name.toLowerCase() === "x-faas-runner-state" && raw[i + 1] === "draining") {
            this.activator.replicaFailed(state, slot, "draining");
          }
          out.push(name, raw[i + 1] as string);
        }
        if (call.episode !== undefined) {
          out.push("x-faas-cold-start", "true", "server-timing", serverTiming(call.parkedMs, call.episode));
        } else if (call.parkedMs > 0) {
          out.push("server-timing", `parked;dur=${call.parkedMs.toFixed(2)}`);
        }
        res.writeHead(status, out);
        ures.pipe(res);
        ures.once("end", () => {
          release();
          this.#record(call, status);
        });
        ures.once("error", () => {
          release();
          res.destroy();
          this.#record(call, 502);
        });
      }),
    );
    upstream.on(
      "error",
      guard((err: NodeJS.ErrnoException) => {
        release();
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
        const refused = err.code === "ECONNREFUSED";
        this.activator.replicaFailed(state, slot, err.code ?? "error");
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
      }),
    );
    res.once(
      "close",
      guard(() => {
        if (!res.writableFinished) {
          upstream.destroy();
          release();
          if (!call.done) this.#record(call, 499);
        }
      }),
    );
    if (!call.hasBody) upstream.end();
    else if (headers["content-length"] !== undefined) req.pipe(upstream);
    else this.#pipeLimited(req, upstream);
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
    call.state.lastActivityMs = now;
    call.state.telemetry.observe(status, now - call.startedAt);
  }
}

function serverTiming(parkedMs: number, e: ColdEpisode): string {
  let out = `parked;dur=${parkedMs.toFixed(2)}`;
  for (const s of e.steps) out += `, ${s.name};dur=${s.ms.toFixed(2)}`;
  return out;
}

/** A client may ask to wait less than the gateway's limit: `x-faas-deadline-ms`. */
function parkBudget(req: IncomingMessage, maxMs: number): number {
  const raw = req.headers["x-faas-deadline-ms"];
  if (typeof raw !== "string") return maxMs;
  const ms = Number(raw);
  return Number.isFinite(ms) && ms > 0 ? Math.min(ms, maxMs) : maxMs;
}
