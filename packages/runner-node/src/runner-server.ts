/**
 * The runner's HTTP surface (docs/runner-protocol.md): control endpoints,
 * `/invoke[/<rest>]`, malformed-request answers and the SIGTERM drain.
 */
import { timingSafeEqual } from "node:crypto";
import { existsSync, writeFileSync } from "node:fs";
import { Agent, createServer, type IncomingMessage, request, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { RunnerConfig } from "./config.js";
import { RunnerError } from "./errors.js";
import { type FunctionHost, roundMs } from "./function-host.js";
import type { CallResult } from "./function-worker.js";
import { type LoadSpec, parseLoadSpec } from "./load-spec.js";
import type { Logger } from "./log.js";

const JSON_HEADERS = ["content-type", "application/json"];
/** On every RUNNER_NOT_SPECIALIZED answer: the handler did not run, the call may be sent again. */
const GENERIC_HEADERS = [...JSON_HEADERS, "x-faas-runner-state", "generic"];
/**
 * Valid load specs the warm-up validates (never loads), as text parsed the way a request body is:
 * inline code with env, and a package from a registry.
 */
const WARM_SPECS = [
  JSON.stringify({
    name: "faas-warm",
    runtime: "nodejs",
    handler: "main.handle",
    code: "export function handle() {}\n",
    timeoutSeconds: 30,
    env: { FAAS_WARM: "1" },
  }),
  JSON.stringify({
    name: "faas-warm",
    runtime: "nodejs",
    handler: "main.handle",
    package: { digest: `sha256:${"0".repeat(64)}`, registry: "http://127.0.0.1:5000", repository: "default/warm" },
    timeoutSeconds: 30,
  }),
];
/**
 * `<function> <ms>`: an invocation sent right behind POST /specialize waits up to
 * `<ms>` for that function's load (docs/runner-protocol.md).
 */
const AWAIT_LOAD_HEADER = "x-faas-await-load";

export class RunnerServer {
  readonly server: Server;
  #draining = false;
  #inFlight = 0;
  #drained: (() => void) | undefined;
  /** A pool runner restarted after its claim comes back generic: never usable again. */
  readonly #restartedAfterClaim: boolean;

  constructor(
    private readonly config: RunnerConfig,
    private readonly host: FunctionHost,
    private readonly log: Logger,
    /** Called once a load that timed out has been answered: the runner must go (exit 3). */
    private readonly onLoadTimeout: () => void = () => {},
  ) {
    this.#restartedAfterClaim = config.poolClaimFile !== undefined && existsSync(config.poolClaimFile);
    this.server = createServer(
      {
        keepAliveTimeout: config.keepAliveSeconds * 1000,
        headersTimeout: config.headersTimeoutSeconds * 1000,
        noDelay: true,
      },
      (req, res) => this.#route(req, res),
    );
    this.server.on("clientError", (err: NodeJS.ErrnoException, socket: Socket) => this.#badRequest(err, socket));
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen({ port: this.config.port, host: this.config.host, backlog: 511 }, () => {
        this.server.off("error", reject);
        const address = this.server.address();
        resolve(typeof address === "object" && address ? address.port : this.config.port);
      });
    });
  }

  /**
   * Sends a few requests to itself over one kept-alive connection before the
   * runner says it listens, so a cold start's control and invoke requests do
   * not run this thread's HTTP code for the first time. None changes state:
   * a generic runner answers them with 503 or 400.
   */
  async warmUp(rounds = 12): Promise<void> {
    const address = this.server.address();
    if (typeof address !== "object" || address === null) return;
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const host = address.family === "IPv6" ? "::1" : "127.0.0.1";
    const send = (method: string, path: string, body?: string): Promise<void> =>
      new Promise((resolve) => {
        const req = request({ host, port: address.port, method, path, agent }, (res) => {
          res.resume();
          res.on("end", resolve);
          res.on("error", () => resolve());
        });
        req.on("error", () => resolve());
        req.end(body);
      });
    try {
      for (let i = 0; i < rounds; i++) {
        await send("GET", "/healthz");
        await send("GET", "/readyz");
        await send("GET", "/invoke/warm?x=1");
        await send("POST", "/specialize", "{}");
        // The validation of a whole, valid spec (a POST above stops at its first field): its patterns
        // compile on their first use, which would otherwise be a cold start's. Nothing is loaded.
        await parseLoadSpec(JSON.parse(WARM_SPECS[i % WARM_SPECS.length] as string)).catch(() => undefined);
      }
      // A package pull uses fetch, whose first call loads and compiles its HTTP client
      // (~40 ms here): done now, against this server, rather than on a cold start.
      for (let i = 0; i < 3; i++) {
        const res = await fetch(`http://${host.includes(":") ? `[${host}]` : host}:${address.port}/healthz`).catch(
          () => undefined,
        );
        await res?.arrayBuffer().catch(() => undefined);
      }
    } finally {
      agent.destroy();
    }
  }

  /** Becomes the given function, or throws a RunnerError (400/409). */
  async specialize(spec: LoadSpec): Promise<number> {
    const loadMs = await this.host.specialize(spec);
    if (this.config.poolClaimFile !== undefined) writeFileSync(this.config.poolClaimFile, spec.name);
    // Logged after the caller has its answer: the log line is not on the cold path.
    setImmediate(() => this.log.info("specialized", { fn: spec.name, loadMs: roundMs(loadMs) }));
    return loadMs;
  }

  /** Stops accepting, answers new calls with 503, resolves once in-flight calls are done. */
  drain(): Promise<void> {
    this.#draining = true;
    this.server.close();
    this.server.closeIdleConnections();
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#drained = resolve;
    });
  }

  close(): void {
    this.server.closeAllConnections();
  }

  #route(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? "/";
    const invokePath = toInvokePath(url);
    if (invokePath !== undefined) {
      this.#invoke(req, res, invokePath);
      return;
    }
    const path = url.split("?", 1)[0] ?? url;
    const route = ROUTES[path];
    if (!route) {
      this.#sendError(res, new RunnerError("NOT_FOUND", `no route for ${path}; calls go to /invoke[/<path>]`));
    } else if (!route.methods.includes(req.method ?? "")) {
      this.#sendError(res, methodNotAllowed(req, route.methods[0] as string));
    } else if (route.name === "specialize") {
      void this.#specialize(req, res);
    } else if (route.name === "readyz") {
      this.#readyz(res);
    } else {
      this.#sendJson(res, 200, { status: "ok" });
    }
  }

  #readyz(res: ServerResponse): void {
    // Which pod answers at this address (a gateway checks an announcement with it).
    if (this.config.pod.uid !== undefined) res.setHeader("x-faas-pod-uid", this.config.pod.uid);
    if (this.#draining) this.#sendJson(res, 503, { status: "draining" });
    else if (this.#restartedAfterClaim) this.#sendJson(res, 503, { status: "restarted" });
    else if (this.host.state === "ready")
      this.#sendJson(res, 200, { status: "ready", function: this.host.functionName });
    else if (this.host.state === "loading") this.#sendJson(res, 503, { status: "loading" });
    // A pool runner is ready to be claimed while generic; any other is not ready yet.
    else this.#sendJson(res, this.config.poolClaimFile !== undefined ? 200 : 503, { status: "generic" });
  }

  async #specialize(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      if (this.#draining) throw new RunnerError("RUNNER_DRAINING", "runner is shutting down");
      this.#checkMaySpecialize(req);
      const body = await readBody(req, this.config.maxSpecBytes);
      let parsed: unknown;
      try {
        parsed = JSON.parse(Buffer.from(body).toString("utf8"));
      } catch (err) {
        throw new RunnerError("INVALID_SPEC", `load spec is not valid JSON: ${(err as Error).message}`);
      }
      const spec = await parseLoadSpec(parsed);
      const loadMs = await this.specialize(spec);
      this.#sendJson(res, 200, { function: spec.name, loadMs: roundMs(loadMs) });
    } catch (err) {
      const error = asRunnerError(err);
      this.#sendError(res, error);
      if (error.details.loadTimeoutMs !== undefined) res.once("finish", () => this.onLoadTimeout());
    }
  }

  /** Throws 403 for a runner started with its code, 401 without the pool's token. */
  #checkMaySpecialize(req: IncomingMessage): void {
    if (this.config.preloaded) {
      throw new RunnerError(
        "FORBIDDEN",
        "this runner was started with its function's code (FAAS_CODE_DIR or FAAS_FUNCTION_SPEC); it never specializes",
      );
    }
    const token = this.config.specializeToken;
    if (token !== undefined) {
      const given = Buffer.from(req.headers.authorization ?? "");
      const want = Buffer.from(`Bearer ${token}`);
      if (given.length !== want.length || !timingSafeEqual(given, want)) {
        throw new RunnerError("UNAUTHORIZED", "specialize needs the pool's bearer token");
      }
    }
    if (this.#restartedAfterClaim) {
      throw new RunnerError("CONFLICT", "this runner restarted after it was claimed; it is being replaced");
    }
  }

  #invoke(req: IncomingMessage, res: ServerResponse, path: string): void {
    if (this.#draining) {
      const fn = this.host.functionName;
      this.#sendError(res, new RunnerError("RUNNER_DRAINING", "runner is shutting down", { function: fn }));
      return;
    }
    if (FETCH_FORBIDDEN_METHODS.has(req.method ?? "")) {
      req.resume();
      const message = `${req.method} requests cannot reach a handler: the Fetch API's Request does not allow that method`;
      this.#sendError(res, new RunnerError("METHOD_NOT_ALLOWED", message, { function: this.host.functionName }));
      return;
    }
    this.#inFlight++;
    const done = (outcome: CallResult | RunnerError): void => {
      if (outcome instanceof RunnerError) this.#sendError(res, outcome);
      else this.#send(res, outcome.status, outcome.headers, outcome.body);
      if (--this.#inFlight === 0 && this.#drained) this.#drained();
    };
    const hasBody = req.headers["content-length"] !== undefined || req.headers["transfer-encoding"] !== undefined;
    const start = (body: ArrayBuffer | null): void => {
      const { headers, awaited } = takeAwaitLoad(req.rawHeaders);
      const call = { method: req.method ?? "GET", path, headers, body };
      const state = this.host.state;
      if (state === "ready") {
        const fn = this.host.functionName;
        if (awaited !== undefined && awaited.fn !== fn)
          done(new RunnerError("RUNNER_NOT_SPECIALIZED", `runner is specialized as ${fn}, not ${awaited.fn}`));
        else this.host.invoke(call, done);
        return;
      }
      if (this.#restartedAfterClaim || (this.config.codeDir !== undefined && state === "generic")) {
        this.host.invoke(call, done); // no function will ever be loaded: RUNNER_NOT_SPECIALIZED at once
        return;
      }
      if (state === "loading" && awaited === undefined) {
        this.host.invokeWhenLoaded(call, done); // held in the worker that imports the code
        return;
      }
      void this.host.awaitLoadStart(awaited).then((notLoaded) => {
        if (notLoaded !== undefined) done(new RunnerError("RUNNER_NOT_SPECIALIZED", notLoaded));
        else this.host.invokeWhenLoaded(call, done);
      });
    };
    if (!hasBody) {
      start(null);
      return;
    }
    void readBody(req, Number.POSITIVE_INFINITY).then(
      (body) => start(body.byteLength ? body : null),
      (err: unknown) => done(asRunnerError(err)),
    );
  }

  #send(res: ServerResponse, status: number, headers: string[], body: ArrayBuffer | string | null): void {
    const out = this.#draining
      ? [...headers, "x-faas-runner-state", "draining", "connection", "close"]
      : headers.slice();
    let payload: Uint8Array | string | undefined;
    if (typeof body === "string") {
      payload = body;
      out.push("content-length", String(Buffer.byteLength(body)));
    } else if (body) {
      payload = new Uint8Array(body);
      out.push("content-length", String(body.byteLength));
    } else if (status !== 204 && status !== 304) {
      out.push("content-length", "0");
    }
    res.writeHead(status, out);
    res.end(payload);
  }

  #sendJson(res: ServerResponse, status: number, value: unknown): void {
    this.#send(res, status, JSON_HEADERS, JSON.stringify(value));
  }

  #sendError(res: ServerResponse, err: RunnerError): void {
    if (err.code === "INTERNAL")
      this.log.error("internal-error", { message: err.message, stack: (err.cause as Error)?.stack });
    this.#send(res, err.status, err.code === "RUNNER_NOT_SPECIALIZED" ? GENERIC_HEADERS : JSON_HEADERS, err.toBody());
  }

  #badRequest(err: NodeJS.ErrnoException, socket: Socket): void {
    if (!socket.writable || err.code === "ECONNRESET") {
      socket.destroy();
      return;
    }
    const reason =
      err.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? "request not received in time"
        : `malformed HTTP request (${err.code ?? err.message})`;
    const body = new RunnerError("BAD_REQUEST", reason).toBody();
    socket.end(
      `HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  }
}

/**
 * Takes x-faas-await-load out of the request's raw headers (it is the runner's,
 * not the handler's): `{fn, ms}` from `<function> <ms>` (ms capped at a minute),
 * undefined when absent or malformed.
 */
function takeAwaitLoad(raw: string[]): { headers: string[]; awaited: { fn: string; ms: number } | undefined } {
  const isIt = (name: string): boolean =>
    name.length === AWAIT_LOAD_HEADER.length && name.toLowerCase() === AWAIT_LOAD_HEADER;
  let at = -1;
  for (let i = 0; i < raw.length && at < 0; i += 2) if (isIt(raw[i] as string)) at = i;
  if (at < 0) return { headers: raw, awaited: undefined };
  const headers: string[] = [];
  for (let i = 0; i < raw.length; i += 2)
    if (!isIt(raw[i] as string)) headers.push(raw[i] as string, raw[i + 1] as string);
  const [fn = "", rawMs = ""] = (raw[at + 1] as string).trim().split(" ", 2);
  const ms = Number(rawMs);
  const valid = fn !== "" && rawMs !== "" && Number.isFinite(ms) && ms > 0;
  return { headers, awaited: valid ? { fn, ms: Math.min(ms, 60_000) } : undefined };
}

/** Methods a Fetch `Request` refuses to carry (fetch spec, "forbidden method"). */
const FETCH_FORBIDDEN_METHODS = new Set(["CONNECT", "TRACE", "TRACK"]);

const ROUTES: Record<string, { name: string; methods: string[] } | undefined> = {
  "/healthz": { name: "healthz", methods: ["GET", "HEAD"] },
  "/readyz": { name: "readyz", methods: ["GET", "HEAD"] },
  "/specialize": { name: "specialize", methods: ["POST"] },
};

/** `/invoke` → `/`, `/invoke?q` → `/?q`, `/invoke/a?q` → `/a?q`; undefined for other paths. */
function toInvokePath(url: string): string | undefined {
  if (!url.startsWith("/invoke")) return undefined;
  const rest = url.slice(7);
  if (rest === "" || rest[0] === "?") return `/${rest}`;
  return rest[0] === "/" ? rest : undefined;
}

function methodNotAllowed(req: IncomingMessage, allowed: string): RunnerError {
  return new RunnerError("METHOD_NOT_ALLOWED", `${req.method} not allowed on ${req.url}; use ${allowed}`);
}

function asRunnerError(err: unknown): RunnerError {
  if (err instanceof RunnerError) return err;
  return new RunnerError("INTERNAL", (err as Error).message ?? String(err), {}, { cause: err });
}

/** Reads the whole body into one standalone ArrayBuffer (safe to transfer to a worker). */
function readBody(req: IncomingMessage, maxBytes: number): Promise<ArrayBuffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.byteLength;
      // Past the limit: keep reading (and dropping) so the 413 reaches the client.
      if (size > maxBytes) reject(new RunnerError("BODY_TOO_LARGE", `body exceeds ${maxBytes} bytes`));
      else chunks.push(chunk);
    });
    req.on("error", reject);
    req.on("close", () => {
      if (!req.complete)
        reject(new RunnerError("BAD_REQUEST", "client closed the connection before sending the whole body"));
    });
    req.on("end", () => {
      // Not Buffer.concat: small Buffers share a pool that must never be transferred.
      const out = new Uint8Array(size);
      let offset = 0;
      for (const c of chunks) {
        out.set(c, offset);
        offset += c.byteLength;
      }
      resolve(out.buffer);
    });
  });
}
