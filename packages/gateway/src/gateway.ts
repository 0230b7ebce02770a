/**
 * The gateway server: invocation, health, metrics and admin routes over one
 * `node:http` server, with limits against slow or oversized clients and a
 * graceful stop that loses no accepted request. With `metricsPort`, `/metrics`
 * moves to a server of its own on that port.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { FaasError } from "@faas/api";
import type { Logger } from "pino";
import { Activator } from "./activator.js";
import { AdminApi } from "./admin-api.js";
import type { Backend } from "./backend.js";
import type { GatewayConfig } from "./config.js";
import { sendError, sendInternalError, sendJson } from "./http-util.js";
import { Invoker } from "./invoker.js";

export class Gateway {
  readonly activator: Activator;
  readonly #server: Server;
  /** `/metrics` alone, when `cfg.metricsPort` is set. */
  readonly #metricsServer: Server | undefined;
  readonly #invoker: Invoker;
  readonly #admin: AdminApi;
  #ready = false;
  #stopping: Promise<void> | undefined;

  constructor(
    private readonly cfg: GatewayConfig,
    private readonly backend: Backend,
    private readonly log: Logger,
    opts: { defaultMetrics?: boolean } = {},
  ) {
    this.activator = new Activator(backend, cfg, log.child({ component: "activator" }), opts);
    backend.registerMetrics?.(this.activator.metrics.registry);
    this.#invoker = new Invoker(this.activator, cfg, log.child({ component: "invoker" }), backend.keys);
    this.#admin = new AdminApi(backend, this.activator, cfg.adminToken, () => this.url);
    this.#server = createServer(
      {
        headersTimeout: cfg.headersTimeoutMs,
        requestTimeout: cfg.requestTimeoutMs,
        keepAliveTimeout: cfg.keepAliveTimeoutMs,
        // Node checks header and request timeouts only this often (default 30 s).
        connectionsCheckingInterval: Math.max(100, Math.min(1000, cfg.headersTimeoutMs / 2)),
        maxHeaderSize: 16 * 1024,
      },
      (req, res) => {
        try {
          this.#route(req, res);
        } catch (err) {
          sendInternalError(this.log, req, res, err);
        }
      },
    );
    if (cfg.metricsPort > 0) {
      this.#metricsServer = createServer(
        { headersTimeout: cfg.headersTimeoutMs, requestTimeout: cfg.requestTimeoutMs },
        (req, res) => {
          req.resume();
          if (req.url === "/metrics") this.#sendMetrics(req, res);
          else sendError(res, new FaasError("NOT_FOUND", `this port serves /metrics only`));
        },
      );
      this.#metricsServer.on("clientError", (_err, socket: Socket) => socket.destroy());
    }
    this.#server.on("clientError", (err: NodeJS.ErrnoException, socket: Socket) => {
      try {
        this.#answerClientError(err, socket);
      } catch (bug) {
        this.log.error({ err: bug, clientError: err.code }, "internal error answering a malformed request");
        socket.destroy();
      }
    });
  }

  /** Node's parser refused the request: say why, then close (framing can no longer be trusted). */
  #answerClientError(err: NodeJS.ErrnoException, socket: Socket): void {
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const status = err.code === "HPE_HEADER_OVERFLOW" ? 431 : err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? 408 : 400;
    const body = JSON.stringify({
      error: { code: "BAD_REQUEST", message: `malformed HTTP request (${err.code ?? "parse error"})` },
    });
    socket.end(
      `HTTP/1.1 ${status} ${status === 431 ? "Request Header Fields Too Large" : status === 408 ? "Request Timeout" : "Bad Request"}\r\n` +
        `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  }

  #route(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? "/";
    if (Invoker.matches(url)) {
      if (this.#stopping !== undefined) {
        req.resume();
        sendError(res, new FaasError("SHUTTING_DOWN", "the gateway is shutting down; retry"), { connection: "close" });
        return;
      }
      this.#invoker.handle(req, res);
      return;
    }
    if (url.startsWith("/admin/")) {
      this.#admin.handle(req, res).catch((err: unknown) => sendInternalError(this.log, req, res, err));
      return;
    }
    req.resume();
    if (url === "/healthz") {
      sendJson(res, 200, { status: "ok" });
      return;
    }
    if (url === "/readyz") {
      const ready = this.#ready && this.#stopping === undefined && this.backend.ready?.() !== false;
      sendJson(res, ready ? 200 : 503, { status: ready ? "ready" : "not ready", backend: this.backend.kind });
      return;
    }
    if (url === "/metrics" && this.#metricsServer === undefined) {
      this.#sendMetrics(req, res);
      return;
    }
    sendError(res, new FaasError("NOT_FOUND", `no route for ${url}; invoke functions at /invoke/<name>`));
  }

  #sendMetrics(req: IncomingMessage, res: ServerResponse): void {
    this.activator.metrics.registry
      .metrics()
      .then((text) => {
        res.writeHead(200, { "content-type": this.activator.metrics.registry.contentType });
        res.end(text);
      })
      .catch((err: unknown) => sendInternalError(this.log, req, res, err));
  }

  get port(): number {
    return (this.#server.address() as AddressInfo | null)?.port ?? this.cfg.port;
  }

  get url(): string {
    const host = this.cfg.host === "0.0.0.0" || this.cfg.host === "::" ? "127.0.0.1" : this.cfg.host;
    return `http://${host.includes(":") ? `[${host}]` : host}:${this.port}`;
  }

  /** Starts the backend, runs `beforeListen` (e.g. deploying manifests), then accepts requests. */
  async start(beforeListen?: () => Promise<void>): Promise<void> {
    await this.backend.start(this.activator, this.activator);
    await beforeListen?.();
    await new Promise<void>((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(this.cfg.port, this.cfg.host, () => {
        this.#server.off("error", reject);
        // Later server errors (say, EMFILE on accept) are logged; unhandled, they would end the process.
        this.#server.on("error", (err) => this.log.error({ err }, "server error"));
        resolve();
      });
    });
    const metrics = this.#metricsServer;
    if (metrics !== undefined) {
      await new Promise<void>((resolve, reject) => {
        metrics.once("error", reject);
        metrics.listen(this.cfg.metricsPort, this.cfg.host, () => {
          metrics.off("error", reject);
          metrics.on("error", (err) => this.log.error({ err }, "metrics server error"));
          resolve();
        });
      });
    }
    this.#ready = true;
    this.log.info(
      { url: this.url, backend: this.backend.kind, metricsPort: this.cfg.metricsPort || undefined },
      "gateway listening",
    );
  }

  /** Stops accepting, lets in-flight and parked requests finish (bounded), then stops the backend. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeIdleConnections();
    const deadline = performance.now() + this.cfg.shutdownGraceMs;
    while (this.activator.inFlightTotal + this.activator.parkedTotal > 0 && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    this.activator.rejectAllParked(new FaasError("SHUTTING_DOWN", "the gateway is shutting down; retry"));
    this.#server.closeAllConnections();
    this.#invoker.close();
    this.#metricsServer?.closeAllConnections();
    this.#metricsServer?.close();
    await closed;
    await this.backend.stop();
    this.log.info("gateway stopped");
  }
}
