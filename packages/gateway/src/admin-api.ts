/**
 * `/admin/…`: the management API the CLI talks to in local mode. Every call
 * needs `Authorization: Bearer <token>`; without a configured token the whole
 * API answers 404, so no admin endpoint is ever open.
 */
import { timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { FaasError, parseFunction } from "@faas/api";
import type { Activator } from "./activator.js";
import type { Backend, BackendAdmin, FunctionStatus, KeyAdmin, ValueKind } from "./backend.js";
import { decodePathSegment, readJson, sendError, sendJson } from "./http-util.js";

const MAX_ADMIN_BODY_BYTES = 1024 * 1024;

/** What `faas list` shows: the backend's status plus the gateway's own view. */
export interface FunctionSummary extends FunctionStatus {
  concurrency: number;
  idleSeconds: number;
  coldStarts: number;
  inFlight: number;
  parked: number;
  p50Ms: number | null;
  url: string;
  /** `spec.auth`, and how many keys the function has (never the keys). */
  auth: string;
  apiKeys: number;
}

export class AdminApi {
  readonly #token: Buffer | undefined;
  constructor(
    private readonly backend: Backend,
    private readonly activator: Activator,
    token: string | undefined,
    private readonly publicUrl: () => string,
  ) {
    this.#token = token ? Buffer.from(token) : undefined;
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      if (this.#token === undefined) throw new FaasError("NOT_FOUND", `no route for ${req.url}`);
      this.#authorize(req);
      const url = parseUrl(req.url ?? "/");
      const parts = url.pathname
        .split("/")
        .filter(Boolean)
        .map((p) => decodePathSegment(p, "path segment"));
      const valueKind = VALUE_ROUTES.get(parts[1] ?? "");
      if (valueKind !== undefined && parts.length <= 3) return await this.#values(req, res, valueKind, parts[2]);
      if (parts[1] === "keys" && parts.length <= 3) return await this.#keys(req, res, undefined, parts[2]);
      if (parts[1] !== "functions") throw new FaasError("NOT_FOUND", `no route for ${url.pathname}`);
      const name = parts[2];
      if (name === undefined) return this.#list(req, res);
      if (parts[3] === "logs" && parts.length === 4) return this.#logs(res, name, url.searchParams);
      if (parts[3] === "keys" && parts.length === 4) return await this.#keys(req, res, name, undefined);
      if (parts.length !== 3) throw new FaasError("NOT_FOUND", `no route for ${url.pathname}`);
      switch (req.method) {
        case "GET":
          return sendJson(res, 200, this.#summary(name));
        case "PUT":
          return await this.#deploy(req, res, name);
        case "DELETE":
          return await this.#remove(res, name);
        default:
          throw new FaasError("METHOD_NOT_ALLOWED", `${req.method} is not allowed on ${url.pathname}`);
      }
    } catch (err) {
      // Anything else is a bug: the gateway answers it as INTERNAL, logged with a request id.
      if (!(err instanceof FaasError)) throw err;
      req.resume();
      sendError(res, err);
    }
  }

  #authorize(req: IncomingMessage): void {
    const header = req.headers.authorization ?? "";
    const given = Buffer.from(header.startsWith("Bearer ") ? header.slice(7) : "");
    const token = this.#token as Buffer;
    if (given.length !== token.length || !timingSafeEqual(given, token)) {
      throw new FaasError("UNAUTHORIZED", "missing or wrong admin token (the CLI reads it from the data directory)");
    }
  }

  #admin() {
    const admin = this.backend.admin;
    if (admin === undefined) {
      throw new FaasError(
        "METHOD_NOT_ALLOWED",
        `the ${this.backend.kind} backend is managed elsewhere (kubectl apply)`,
      );
    }
    return admin;
  }

  /** `/admin/secrets[/<name>]`, `/admin/configs[/<name>]`: keys are listed, values only ever written. */
  async #values(req: IncomingMessage, res: ServerResponse, kind: ValueKind, name: string | undefined): Promise<void> {
    const admin: BackendAdmin = this.#admin();
    if (admin.listValues === undefined || admin.setValues === undefined || admin.deleteValues === undefined) {
      throw new FaasError("METHOD_NOT_ALLOWED", `the ${this.backend.kind} backend keeps no ${kind}s`);
    }
    if (name === undefined) {
      if (req.method !== "GET") throw new FaasError("METHOD_NOT_ALLOWED", `${req.method} is not allowed here`);
      return sendJson(res, 200, { items: admin.listValues(kind) });
    }
    switch (req.method) {
      case "PUT": {
        const body = (await readJson(req, MAX_ADMIN_BODY_BYTES)) as { data?: unknown; replace?: unknown };
        const data = body?.data;
        if (typeof data !== "object" || data === null || Array.isArray(data)) {
          throw new FaasError("BAD_REQUEST", 'body must be {"data": {"KEY": "value", …}, "replace": false}');
        }
        return sendJson(
          res,
          200,
          await admin.setValues(kind, name, data as Record<string, string>, body.replace === true),
        );
      }
      case "DELETE":
        if (!(await admin.deleteValues(kind, name))) throw new FaasError("NOT_FOUND", `no ${kind} named "${name}"`);
        return sendJson(res, 200, { deleted: name });
      default:
        throw new FaasError("METHOD_NOT_ALLOWED", `${req.method} is not allowed on ${kind}s`);
    }
  }

  #list(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== "GET") throw new FaasError("METHOD_NOT_ALLOWED", `${req.method} is not allowed here`);
    const names = this.backend
      .listFunctions()
      .map((f) => f.metadata.name)
      .sort();
    sendJson(res, 200, { items: names.map((n) => this.#summary(n)) });
  }

  #summary(name: string): FunctionSummary {
    const fn = this.backend.getFunction(name);
    if (fn === undefined) throw new FaasError("FUNCTION_NOT_FOUND", `no function named "${name}"`);
    const status = this.backend.status(name);
    const p50 = this.activator.p50Ms(name);
    return {
      name,
      runtime: fn.spec.runtime,
      readyReplicas: status?.readyReplicas ?? 0,
      desiredReplicas: status?.desiredReplicas ?? 0,
      minReplicas: fn.spec.minReplicas,
      maxReplicas: fn.spec.maxReplicas,
      concurrency: fn.spec.concurrency,
      idleSeconds: fn.spec.idleSeconds,
      coldStarts: this.activator.coldStarts(name),
      inFlight: this.activator.inFlight(name),
      parked: this.activator.queued(name),
      p50Ms: p50 ?? null,
      url: `${this.publicUrl()}/invoke/${name}`,
      auth: fn.spec.auth,
      apiKeys: this.backend.keys?.apiKeyCount(name) ?? 0,
    };
  }

  /**
   * `POST /admin/functions/<fn>/keys` creates a key (the only answer that ever
   * holds it), `GET /admin/functions/<fn>/keys` and `GET /admin/keys` list
   * them, `DELETE /admin/keys/<id>` revokes one.
   */
  async #keys(
    req: IncomingMessage,
    res: ServerResponse,
    fn: string | undefined,
    id: string | undefined,
  ): Promise<void> {
    const keys = this.#keyAdmin();
    if (fn !== undefined && req.method === "POST") {
      req.resume();
      const { key, info } = await keys.create(fn);
      return sendJson(res, 201, { ...info, key });
    }
    if (req.method === "GET" && id === undefined) {
      if (fn !== undefined && this.backend.getFunction(fn) === undefined)
        throw new FaasError("FUNCTION_NOT_FOUND", `no function named "${fn}"`);
      return sendJson(res, 200, { items: keys.list(fn) });
    }
    if (req.method === "DELETE" && id !== undefined) {
      if (!(await keys.revoke(id))) throw new FaasError("NOT_FOUND", `no API key with id "${id}"`);
      return sendJson(res, 200, { revoked: id });
    }
    throw new FaasError("METHOD_NOT_ALLOWED", `${req.method} is not allowed on ${req.url}`);
  }

  #keyAdmin(): KeyAdmin {
    const keys = this.backend.admin?.keys;
    if (keys === undefined) {
      throw new FaasError(
        "METHOD_NOT_ALLOWED",
        `the ${this.backend.kind} backend keeps its API keys elsewhere (faas keys --kubeconfig …)`,
      );
    }
    return keys;
  }

  async #deploy(req: IncomingMessage, res: ServerResponse, name: string): Promise<void> {
    const admin = this.#admin();
    const body = await readJson(req, MAX_ADMIN_BODY_BYTES);
    const fn = parseFunction(body, "request body");
    if (fn.metadata.name !== name) {
      throw new FaasError("INVALID_SPEC", `metadata.name "${fn.metadata.name}" does not match the URL's "${name}"`);
    }
    const created = await admin.deploy(fn);
    sendJson(res, created ? 201 : 200, { created, function: this.#summary(name) });
  }

  async #remove(res: ServerResponse, name: string): Promise<void> {
    const removed = await this.#admin().remove(name);
    if (!removed) throw new FaasError("FUNCTION_NOT_FOUND", `no function named "${name}"`);
    sendJson(res, 200, { deleted: name });
  }

  #logs(res: ServerResponse, name: string, q: URLSearchParams): void {
    const admin = this.#admin();
    if (this.backend.getFunction(name) === undefined)
      throw new FaasError("FUNCTION_NOT_FOUND", `no function named "${name}"`);
    const abort = new AbortController();
    res.once("close", () => abort.abort());
    const tail = Number(q.get("tail") ?? 100);
    const stream = admin.logs(name, {
      follow: q.get("follow") === "1" || q.get("follow") === "true",
      tailLines: Number.isInteger(tail) && tail >= 0 ? tail : 100,
      signal: abort.signal,
    });
    res.writeHead(200, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" });
    stream.on("error", () => res.destroy());
    stream.pipe(res);
  }
}

const VALUE_ROUTES = new Map<string, ValueKind>([
  ["secrets", "secret"],
  ["configs", "config"],
]);

function parseUrl(target: string): URL {
  try {
    return new URL(target, "http://gateway");
  } catch (cause) {
    throw new FaasError("BAD_REQUEST", `request target is not a valid URL path: ${JSON.stringify(target)}`, { cause });
  }
}
