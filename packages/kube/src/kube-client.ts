/**
 * A thin Kubernetes REST client: kubeconfig and authentication come from
 * `@kubernetes/client-node`'s KubeConfig; requests, patches of any kind
 * (server-side apply, merge, subresources) and watches are plain HTTPS here,
 * so their timeouts and failure modes are ours to control (see ADR 0003).
 */
import { request as httpRequest, type IncomingMessage } from "node:http";
import { Agent, request as httpsRequest, type RequestOptions } from "node:https";
import { createInterface } from "node:readline";
import { KubeConfig } from "@kubernetes/client-node";
import { KubeMetrics, requestLabels } from "./kube-metrics.js";

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    generation?: number;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: {
      apiVersion: string;
      kind: string;
      name: string;
      uid: string;
      controller?: boolean;
      blockOwnerDeletion?: boolean;
    }[];
    creationTimestamp?: string;
    deletionTimestamp?: string;
  };
  [field: string]: unknown;
}

export interface KubeList<T> {
  metadata: { resourceVersion: string; continue?: string };
  items: T[];
}

export interface WatchEvent<T> {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: T;
}

export class KubeError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = "KubeError";
  }
}

export interface ResourceRef {
  group: string;
  version: string;
  plural: string;
  namespace?: string | undefined;
  name?: string | undefined;
  subresource?: string | undefined;
}

/** `/apis/apps/v1/namespaces/default/deployments/x/scale`, `/api/v1/...` for the core group. */
export function resourcePath(r: ResourceRef): string {
  let p = r.group === "" ? `/api/${r.version}` : `/apis/${r.group}/${r.version}`;
  if (r.namespace) p += `/namespaces/${encodeURIComponent(r.namespace)}`;
  p += `/${r.plural}`;
  if (r.name) p += `/${encodeURIComponent(r.name)}`;
  if (r.subresource) p += `/${r.subresource}`;
  return p;
}

export const RESOURCES = {
  functions: { group: "faas.example.com", version: "v1", plural: "functions" },
  deployments: { group: "apps", version: "v1", plural: "deployments" },
  namespaces: { group: "", version: "v1", plural: "namespaces" },
  services: { group: "", version: "v1", plural: "services" },
  configmaps: { group: "", version: "v1", plural: "configmaps" },
  pods: { group: "", version: "v1", plural: "pods" },
  secrets: { group: "", version: "v1", plural: "secrets" },
  events: { group: "", version: "v1", plural: "events" },
  endpointslices: { group: "discovery.k8s.io", version: "v1", plural: "endpointslices" },
  hpas: { group: "autoscaling", version: "v2", plural: "horizontalpodautoscalers" },
  leases: { group: "coordination.k8s.io", version: "v1", plural: "leases" },
  networkpolicies: { group: "networking.k8s.io", version: "v1", plural: "networkpolicies" },
} as const satisfies Record<string, Omit<ResourceRef, "namespace" | "name">>;

type Query = Record<string, string | number | boolean | undefined>;

/** Per-call options: a deadline shorter than the client's default, for callers that must answer fast. */
export interface CallOptions {
  timeoutMs?: number;
}

/** A request failed without any HTTP answer: refused, reset, timed out. */
function isTransportFailure(err: unknown): boolean {
  return !(err instanceof KubeError) && (err as { name?: string })?.name !== "AbortError";
}

function withQuery(path: string, query: Query | undefined): string {
  if (!query) return path;
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined) q.set(k, String(v));
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

export class KubeClient {
  readonly #server: URL;
  readonly #agent: Agent | undefined;
  /** Every API call this client makes, by verb, resource and status; register them with `metrics.register`. */
  readonly metrics = new KubeMetrics();
  /** When the last HTTP answer arrived, and when a request last failed without one (performance.now()). */
  #lastAnswerAt = Number.NEGATIVE_INFINITY;
  #lastTransportFailureAt = Number.NEGATIVE_INFINITY;
  #transportFailure = "";

  private constructor(
    readonly config: KubeConfig,
    private readonly requestTimeoutMs: number,
  ) {
    const cluster = config.getCurrentCluster();
    if (cluster === null) throw new Error("kubeconfig has no current cluster");
    this.#server = new URL(cluster.server);
    this.#agent = this.#server.protocol === "https:" ? new Agent({ keepAlive: true, maxSockets: 32 }) : undefined;
  }

  /**
   * In a pod: the service account; elsewhere: $KUBECONFIG or ~/.kube/config.
   * `context` picks a context of that kubeconfig instead of its current one.
   */
  static load(
    opts: { kubeconfig?: string | undefined; context?: string | undefined; requestTimeoutMs?: number } = {},
  ): KubeClient {
    const kc = new KubeConfig();
    if (opts.kubeconfig) kc.loadFromFile(opts.kubeconfig);
    else kc.loadFromDefault();
    if (opts.context !== undefined) {
      if (kc.getContextObject(opts.context) === null) {
        const known = kc.getContexts().map((c) => c.name);
        throw new Error(`no context "${opts.context}" in the kubeconfig (it has: ${known.join(", ") || "none"})`);
      }
      kc.setCurrentContext(opts.context);
    }
    return new KubeClient(kc, opts.requestTimeoutMs ?? 30_000);
  }

  /**
   * The API server is unreachable as far as this client knows: its last request
   * failed without an HTTP answer, and none has answered since. Says since when
   * (performance.now()) and why; undefined while it answers.
   */
  unreachable(): { since: number; reason: string } | undefined {
    return this.#lastTransportFailureAt > this.#lastAnswerAt
      ? { since: this.#lastTransportFailureAt, reason: this.#transportFailure }
      : undefined;
  }

  /** `GET /readyz` within `timeoutMs`: true when the API server answers 200. Never throws. */
  async ping(timeoutMs: number): Promise<boolean> {
    try {
      const res = await this.#send(await this.#options("GET", "/readyz", {}), undefined, timeoutMs);
      res.resume();
      return res.statusCode === 200;
    } catch {
      return false;
    }
  }

  get namespace(): string {
    return this.config.getContextObject(this.config.getCurrentContext())?.namespace ?? "default";
  }

  /** Options for a request of our own (an upgrade, say): server, path under it, authentication. */
  requestOptions(method: string, path: string, headers: Record<string, string> = {}): Promise<RequestOptions> {
    return this.#options(method, path, headers);
  }

  async #options(method: string, path: string, headers: Record<string, string>): Promise<RequestOptions> {
    const opts: RequestOptions = {
      method,
      protocol: this.#server.protocol,
      hostname: this.#server.hostname,
      port: this.#server.port || (this.#server.protocol === "https:" ? 443 : 80),
      path: `${this.#server.pathname.replace(/\/$/, "")}${path}`,
      headers: { accept: "application/json", ...headers },
      agent: this.#agent,
    };
    await this.config.applyToHTTPSOptions(opts);
    return opts;
  }

  /** Sends one request; counts it once its status is known (or it failed without one). */
  #send(opts: RequestOptions, body: string | undefined, timeoutMs: number): Promise<IncomingMessage> {
    const headers = opts.headers as Record<string, string> | undefined;
    const labels = requestLabels(opts.method ?? "GET", opts.path ?? "/", headers?.["content-type"]);
    return new Promise<IncomingMessage>((resolve, reject) => {
      const late = (): Error =>
        new Error(`kube-apiserver did not answer ${opts.method} ${opts.path} within ${timeoutMs} ms`);
      // A deadline for the whole wait for an answer: connecting included (a stopped API server's
      // full listen queue drops the SYN, and a socket timeout starts only once connected).
      const deadline = setTimeout(() => req.destroy(late()), timeoutMs);
      const req = (this.#server.protocol === "https:" ? httpsRequest : httpRequest)(opts, (res) => {
        clearTimeout(deadline);
        resolve(res);
      });
      // And while the body streams, no more than that between two reads.
      req.setTimeout(timeoutMs, () => req.destroy(late()));
      req.on("error", (err) => {
        clearTimeout(deadline);
        reject(err);
      });
      req.end(body);
    }).then(
      (res) => {
        this.metrics.requests.inc({ ...labels, code: String(res.statusCode ?? 0) });
        this.#lastAnswerAt = performance.now();
        return res;
      },
      (err: unknown) => {
        this.metrics.requests.inc({ ...labels, code: "error" });
        if (isTransportFailure(err)) {
          this.#lastTransportFailureAt = performance.now();
          this.#transportFailure = (err as Error)?.message ?? String(err);
        }
        throw err;
      },
    );
  }

  async request<T>(
    method: string,
    path: string,
    opts: { body?: unknown; contentType?: string; query?: Query } & CallOptions = {},
  ): Promise<T> {
    const body =
      opts.body === undefined ? undefined : typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body);
    const headers: Record<string, string> = {};
    if (body !== undefined) {
      headers["content-type"] = opts.contentType ?? "application/json";
      headers["content-length"] = String(Buffer.byteLength(body));
    }
    const res = await this.#send(
      await this.#options(method, withQuery(path, opts.query), headers),
      body,
      opts.timeoutMs ?? this.requestTimeoutMs,
    );
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString("utf8");
    const status = res.statusCode ?? 0;
    if (status >= 400) {
      let reason = "Unknown";
      let message = text.slice(0, 1000);
      try {
        const s = JSON.parse(text) as { reason?: string; message?: string };
        reason = s.reason ?? reason;
        message = s.message ?? message;
      } catch {}
      throw new KubeError(status, reason, `${method} ${path}: ${status} ${reason}: ${message}`);
    }
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /**
   * A GET whose body is read as it comes (pod logs, `follow=true`; a pod's
   * metrics through the API server's proxy). `idleTimeoutMs` bounds the wait for
   * the answer and then each gap between two reads; 0 waits forever.
   */
  async stream(
    path: string,
    query: Query,
    opts: { signal?: AbortSignal; idleTimeoutMs: number },
  ): Promise<IncomingMessage> {
    const o = await this.#options("GET", withQuery(path, query), { accept: "*/*" });
    const res = await this.#send({ ...o, signal: opts.signal }, undefined, opts.idleTimeoutMs || 2 ** 31 - 1);
    const status = res.statusCode ?? 0;
    if (status >= 400) {
      const chunks: Buffer[] = [];
      for await (const c of res) chunks.push(c as Buffer);
      const text = Buffer.concat(chunks).toString("utf8");
      let reason = "Unknown";
      let message = text.slice(0, 1000);
      try {
        const s = JSON.parse(text) as { reason?: string; message?: string };
        reason = s.reason ?? reason;
        message = s.message ?? message;
      } catch {}
      throw new KubeError(status, reason, `GET ${path}: ${status} ${reason}: ${message}`);
    }
    res.socket.setTimeout(opts.idleTimeoutMs);
    return res;
  }

  get<T>(r: ResourceRef, query?: Query, call?: CallOptions): Promise<T> {
    return this.request<T>("GET", resourcePath(r), { query, ...call });
  }

  /** GET, or undefined on 404. */
  async find<T>(r: ResourceRef, call?: CallOptions): Promise<T | undefined> {
    try {
      return await this.get<T>(r, undefined, call);
    } catch (err) {
      if (err instanceof KubeError && err.status === 404) return undefined;
      throw err;
    }
  }

  list<T>(r: ResourceRef, query?: Query): Promise<KubeList<T>> {
    return this.request<KubeList<T>>("GET", resourcePath(r), { query });
  }

  create<T>(r: ResourceRef, obj: unknown, fieldManager: string): Promise<T> {
    return this.request<T>("POST", resourcePath(r), { body: obj, query: { fieldManager } });
  }

  /** Server-side apply (JSON is YAML), forcing ownership of the fields we set. */
  apply<T>(r: ResourceRef, obj: unknown, fieldManager: string): Promise<T> {
    return this.request<T>("PATCH", resourcePath(r), {
      body: obj,
      contentType: "application/apply-patch+yaml",
      query: { fieldManager, force: true },
    });
  }

  mergePatch<T>(r: ResourceRef, patch: unknown, fieldManager?: string, call?: CallOptions): Promise<T> {
    return this.request<T>("PATCH", resourcePath(r), {
      body: patch,
      contentType: "application/merge-patch+json",
      query: { fieldManager },
      ...call,
    });
  }

  async delete(r: ResourceRef, query?: Query): Promise<boolean> {
    try {
      await this.request("DELETE", resourcePath(r), { query });
      return true;
    } catch (err) {
      if (err instanceof KubeError && err.status === 404) return false;
      throw err;
    }
  }

  /**
   * One watch request: calls `onEvent` per event until the server ends the
   * stream, `signal` aborts, or nothing (not even a bookmark) arrives for
   * `idleTimeoutMs`. Resolves on a normal end, rejects on errors.
   */
  async watch<T>(
    r: ResourceRef,
    query: Query,
    onEvent: (e: WatchEvent<T>) => void,
    opts: { signal: AbortSignal; idleTimeoutMs: number },
  ): Promise<void> {
    const o = await this.#options("GET", withQuery(resourcePath(r), { ...query, watch: 1 }), {});
    const res = await this.#send({ ...o, signal: opts.signal }, undefined, opts.idleTimeoutMs);
    if ((res.statusCode ?? 0) >= 400) {
      res.resume();
      throw new KubeError(res.statusCode ?? 0, "WatchFailed", `watch ${o.path}: HTTP ${res.statusCode}`);
    }
    res.socket.setTimeout(opts.idleTimeoutMs, () => res.destroy(new Error(`watch idle for ${opts.idleTimeoutMs} ms`)));
    const lines = createInterface({ input: res, crlfDelay: Number.POSITIVE_INFINITY });
    try {
      for await (const line of lines) {
        if (line.trim() === "") continue;
        onEvent(JSON.parse(line) as WatchEvent<T>);
      }
    } finally {
      res.socket?.setTimeout(0);
      res.destroy();
    }
  }
}
