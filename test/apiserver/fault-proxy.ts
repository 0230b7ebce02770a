/**
 * A small HTTP proxy in front of the test API server that misbehaves on
 * command: it can fail requests (429, 500, a reset), delay or hold them until
 * a test releases them (forcing an order of lists and watch events), answer a
 * watch with 410 Gone, and cut open watches mid-stream. It logs every request
 * by verb and resource, so tests can count what a component asked for.
 */
import { type ClientRequest, createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { Agent, request } from "node:https";
import type { Socket } from "node:net";
import { requestLabels } from "@faas/kube";

export interface ProxiedRequest {
  /** get, list, watch, create, patch, apply, … */
  verb: string;
  /** `functions`, `endpointslices`, `deployments/scale`, … */
  resource: string;
  /** The namespace in the path, if any. */
  namespace: string | undefined;
  method: string;
  path: string;
  /** The status the client got (undefined while in flight; 0 for a reset). */
  status?: number;
}

export type Match = (r: ProxiedRequest) => boolean;

export type Fault =
  | { kind: "fail"; status: number }
  | { kind: "reset" }
  | { kind: "delay"; ms: number }
  | { kind: "hold"; until: Promise<unknown> }
  | { kind: "expire" }
  | { kind: "end" };

interface Rule {
  match: Match;
  fault: Fault;
  remaining: number;
  hits: number;
}

/** `on({ verb: "list", resource: "functions", namespace: ns })`; unset fields match anything. */
export function on(want: { verb?: string; resource?: string; namespace?: string }): Match {
  return (r) =>
    (want.verb === undefined || r.verb === want.verb) &&
    (want.resource === undefined || r.resource === want.resource) &&
    (want.namespace === undefined || r.namespace === want.namespace);
}

export class FaultProxy {
  readonly log: ProxiedRequest[] = [];
  readonly #rules: Rule[] = [];
  /** Watches from the moment they arrive (not only once answered), so a cut never misses one. */
  readonly #watches = new Set<{ req: ProxiedRequest; res: ServerResponse; upstream: ClientRequest }>();
  readonly #sockets = new Set<Socket>();
  readonly #waiters = new Set<{ match: Match; count: number; resolve: () => void }>();
  readonly #agent = new Agent({ keepAlive: true, rejectUnauthorized: false });
  #server: Server | undefined;
  #port = 0;

  constructor(private readonly upstream: () => { port: number; token: string }) {}

  get url(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  async start(): Promise<void> {
    this.#server = createServer((req, res) => void this.#handle(req, res));
    this.#server.on("connection", (s) => {
      this.#sockets.add(s);
      s.once("close", () => this.#sockets.delete(s));
    });
    await new Promise<void>((resolve) => this.#server?.listen(0, "127.0.0.1", resolve));
    this.#port = (this.#server.address() as { port: number }).port;
  }

  async stop(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    this.#agent.destroy();
    await new Promise<void>((resolve) => (this.#server ? this.#server.close(() => resolve()) : resolve()));
  }

  /** Applies `fault` to the next `times` matching requests (default: all, until removed). */
  fault(match: Match, fault: Fault, times = Number.POSITIVE_INFINITY): { readonly hits: number; remove(): void } {
    const rule: Rule = { match, fault, remaining: times, hits: 0 };
    this.#rules.push(rule);
    return {
      get hits() {
        return rule.hits;
      },
      remove: () => {
        const i = this.#rules.indexOf(rule);
        if (i >= 0) this.#rules.splice(i, 1);
      },
    };
  }

  /** Ends every open watch (matching `match`) abruptly, as a dropped connection would. */
  cutWatches(match: Match = () => true): number {
    let n = 0;
    for (const w of this.#watches) {
      if (!match(w.req)) continue;
      w.res.destroy();
      w.upstream.destroy();
      this.#watches.delete(w);
      n++;
    }
    return n;
  }

  /** Open watches (matching `match`). */
  openWatches(match: Match = () => true): number {
    return [...this.#watches].filter((w) => match(w.req)).length;
  }

  count(match: Match): number {
    return this.log.filter(match).length;
  }

  /** Resolves once `count` matching requests have arrived in all (default: one more than now). */
  waitFor(match: Match, count = this.count(match) + 1, timeoutMs = 15_000): Promise<void> {
    if (this.count(match) >= count) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(new Error(`proxy: waited ${timeoutMs} ms for request #${count} that matches`));
      }, timeoutMs);
      const waiter = {
        match,
        count,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      this.#waiters.add(waiter);
    });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = req.url ?? "/";
    const labels = requestLabels(req.method ?? "GET", path, req.headers["content-type"]);
    const namespace = /\/namespaces\/([^/?]+)\//.exec(path)?.[1];
    const entry: ProxiedRequest = { ...labels, namespace, method: req.method ?? "GET", path };
    this.log.push(entry);
    for (const w of this.#waiters) {
      if (this.count(w.match) >= w.count) {
        this.#waiters.delete(w);
        w.resolve();
      }
    }
    const rule = this.#rules.find((r) => r.remaining > 0 && r.match(entry));
    if (rule) {
      rule.remaining--;
      rule.hits++;
      const f = rule.fault;
      if (f.kind === "fail") return this.#answer(req, res, entry, f.status);
      if (f.kind === "reset") {
        entry.status = 0;
        req.socket.destroy();
        return;
      }
      if (f.kind === "delay") await new Promise((r) => setTimeout(r, f.ms));
      if (f.kind === "hold") await f.until;
      if (f.kind === "end") {
        // A watch the server closes at once, with no event.
        entry.status = 200;
        res.writeHead(200, { "content-type": "application/json" });
        res.end();
        return;
      }
      if (f.kind === "expire") {
        entry.status = 200;
        res.writeHead(200, { "content-type": "application/json" });
        const status = {
          kind: "Status",
          apiVersion: "v1",
          status: "Failure",
          message: "too old resource version",
          reason: "Expired",
          code: 410,
        };
        res.end(`${JSON.stringify({ type: "ERROR", object: status })}\n`);
        return;
      }
    }
    this.#forward(req, res, entry);
  }

  #answer(req: IncomingMessage, res: ServerResponse, entry: ProxiedRequest, status: number): void {
    req.resume();
    entry.status = status;
    const reason = { 429: "TooManyRequests", 410: "Expired", 503: "ServiceUnavailable" }[status] ?? "InternalError";
    const body = JSON.stringify({
      kind: "Status",
      apiVersion: "v1",
      status: "Failure",
      message: `injected ${status}`,
      reason,
      code: status,
    });
    res.writeHead(status, { "content-type": "application/json", ...(status === 429 ? { "retry-after": "1" } : {}) });
    res.end(body);
  }

  #forward(req: IncomingMessage, res: ServerResponse, entry: ProxiedRequest): void {
    const { port, token } = this.upstream();
    const headers = { ...req.headers, host: `127.0.0.1:${port}`, authorization: `Bearer ${token}` };
    const up = request(
      { host: "127.0.0.1", port, method: req.method, path: entry.path, headers, agent: this.#agent },
      (upRes) => {
        entry.status = upRes.statusCode ?? 0;
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        // A watch's events must reach the client as they come.
        if (entry.verb === "watch") res.flushHeaders();
        upRes.pipe(res);
        upRes.on("error", () => res.destroy());
      },
    );
    if (entry.verb === "watch") {
      const w = { req: entry, res, upstream: up };
      this.#watches.add(w);
      res.once("close", () => this.#watches.delete(w));
    }
    up.on("error", () => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      // The API server is down (restarting): what a load balancer in front of it would say.
      this.#answer(req, res, entry, 503);
    });
    res.on("close", () => {
      if (!res.writableFinished) up.destroy();
    });
    req.pipe(up);
  }
}
