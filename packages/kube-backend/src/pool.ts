/**
 * The gateway's side of the warm pool (ADR 0008): a watch on pool pods, and
 * the claim on a cold start — pick a ready idle pod of the function's runtime,
 * `POST /specialize` to it directly with the pool token, route to it the moment
 * it answers, then relabel it so the pool's ReplicaSet lets it go (and starts a
 * replacement) and the function owns it. The runner takes one specialization
 * for life, so the pod itself is the lock: a gateway that loses a race gets 409
 * and takes the next pod. Any failure falls back to the Deployment path, and
 * so do functions a pool pod cannot serve as they are declared: those that
 * refer to Secrets or ConfigMaps (pool pods have no access to them, ADR 0013)
 * and those whose own resources exceed a pool pod's limits.
 */
import { type Agent, request } from "node:http";
import {
  CLAIM_FAILED_ANNOTATION,
  CLAIMED_AT_ANNOTATION,
  CLAIMED_FOR_LABEL,
  CODE_HASH_ANNOTATION,
  envReferences,
  FaasError,
  FUNCTION_API_VERSION,
  FUNCTION_KIND,
  type FunctionResource,
  GATEWAY_FIELD_MANAGER,
  hasReferences,
  POOL_LABEL,
  POOL_STATE_CLAIMED,
  POOL_STATE_IDLE,
  POOL_STATE_LABEL,
  POOL_TOKEN_KEY,
  POOL_TOKEN_SECRET,
  parseErrorBody,
  parseQuantity,
  type ReferenceKind,
  RUNNER_PORT,
  RUNTIMES,
  resolveEnv,
  toLoadSpec,
} from "@faas/api";
import { type ColdStep, type Endpoint, replicaAgent } from "@faas/gateway";
import { type KubeClient, type KubeObject, RESOURCES, Reflector } from "@faas/kube";
import type { Logger } from "pino";
import { Counter, Gauge, type Registry } from "prom-client";

export interface PoolConfig {
  /** Claim pool pods on cold starts; off = the Deployment path only. */
  enabled: boolean;
  /**
   * Longest a `POST /specialize` to a pool pod may take (the code's load included); above the
   * runner's own load timeout, so a runner's answer comes first.
   */
  specializeTimeoutMs: number;
  /** Pods tried per cold start before falling back. */
  maxAttempts: number;
}

export interface PodObject extends KubeObject {
  spec?: { containers?: { resources?: { limits?: Record<string, string> } }[] };
  status?: {
    podIP?: string;
    phase?: string;
    conditions?: { type: string; status: string }[];
    containerStatuses?: { restartCount: number }[];
  };
}

export type FallbackReason =
  | "disabled"
  | "empty"
  | "no_token"
  | "specialize_failed"
  | "load_failed"
  | "references"
  | "mounts"
  | "resources";

/**
 * Whether a pool pod is big enough for a function that declares its own
 * resources: each of the function's limits (or, without one, its request) at
 * most the pod's limit. A function without its own resources fits any pod.
 */
export function fitsPoolPod(fn: FunctionResource, pod: PodObject): boolean {
  const own = fn.spec.resources;
  if (own === undefined) return true;
  const podLimits = pod.spec?.containers?.[0]?.resources?.limits ?? {};
  for (const kind of ["cpu", "memory"] as const) {
    const wanted = own.limits?.[kind] ?? own.requests?.[kind];
    if (wanted === undefined) continue;
    const has = podLimits[kind];
    if (has === undefined) continue;
    if ((parseQuantity(wanted) ?? Infinity) > (parseQuantity(has) ?? 0)) return false;
  }
  return true;
}

/** A claim that did not happen: the caller takes the Deployment path. */
export class PoolFallback extends Error {
  constructor(
    readonly reason: FallbackReason,
    message: string,
  ) {
    super(message);
    this.name = "PoolFallback";
  }
}

export interface Claimed {
  endpoint: Endpoint;
  steps: ColdStep[];
}

interface Mine {
  fn: string;
  codeHash: string;
  endpoint: Endpoint;
}

const isReady = (p: PodObject): boolean =>
  p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") === true;
const restarted = (p: PodObject): boolean => (p.status?.containerStatuses ?? []).some((c) => c.restartCount > 0);
const endpointOf = (p: PodObject, ip: string): Endpoint => ({
  id: `${p.metadata.name}@${ip}`,
  host: ip,
  port: RUNNER_PORT,
});
/** Idle pool pods' connections are refreshed this often (runners keep idle connections 75 s). */
/** Longest wait for the pool token Secret when it is read on a claim. */
const TOKEN_READ_TIMEOUT_MS = 3000;
const PRECONNECT_REFRESH_MS = 20_000;

export class PoolClaimer {
  readonly pods: Reflector<PodObject>;
  #token: string | undefined;
  #tokenReadAt = 0;
  /** Pods this gateway specialized, until the watch shows them claimed (or gone). */
  readonly #mine = new Map<string, Mine>();
  /** Pods tried recently (a claim in progress, or one that failed): not picked again for a while. */
  readonly #tried = new Map<string, number>();
  readonly #claims = new Counter({
    name: "faas_pool_claims_total",
    help: "Pool pods this gateway tried to specialize on cold starts, by runtime and result.",
    labelNames: ["runtime", "result"],
    registers: [],
  });
  readonly #fallbacks = new Counter({
    name: "faas_pool_fallbacks_total",
    help: "Cold starts that took the Deployment path instead of a pool pod, by reason.",
    labelNames: ["runtime", "reason"],
    registers: [],
  });
  readonly #idleGauge: Gauge;
  /** A kept-alive connection per idle pool pod, opened ahead: `/specialize` skips the connect. */
  readonly #agents = new Map<string, Agent>();
  /** Pods with a `/specialize` in flight from this gateway: their connection stays whatever the watch says. */
  readonly #claiming = new Set<string>();
  #refresh: NodeJS.Timeout | undefined;
  /** Told about each ready idle pool pod, so the gateway can open its own connection ahead too. */
  onIdlePod: ((endpoint: Endpoint) => void) | undefined;

  constructor(
    private readonly client: KubeClient,
    private readonly namespace: string,
    private readonly cfg: PoolConfig,
    private readonly log: Logger,
    /** A claimed pod of this function appeared, changed or went: routing must be recomputed. */
    private readonly onClaimedChanged: (fn: string) => void,
  ) {
    this.pods = new Reflector<PodObject>(
      client,
      { resource: { ...RESOURCES.pods, namespace }, labelSelector: POOL_LABEL },
      log.child({ reflector: "pool-pods" }),
    );
    const idle = (runtime: string): number => this.#idle(runtime).length;
    this.#idleGauge = new Gauge({
      name: "faas_pool_idle_pods",
      help: "Ready, unclaimed pool pods this gateway sees, by runtime.",
      labelNames: ["runtime"],
      registers: [],
      collect() {
        for (const runtime of RUNTIMES) this.set({ runtime }, idle(runtime));
      },
    });
    const changed = (p: PodObject): void => {
      const fn = p.metadata.labels?.[CLAIMED_FOR_LABEL] ?? this.#mine.get(p.metadata.name)?.fn;
      if (fn !== undefined) this.onClaimedChanged(fn);
    };
    this.pods.on("add", (p) => {
      this.#preconnect(p);
      changed(p);
    });
    this.pods.on("update", (p) => {
      this.#preconnect(p);
      const mine = this.#mine.get(p.metadata.name);
      // The watch now shows our claim: from here on the pod's own labels say whose it is.
      if (mine !== undefined && p.metadata.labels?.[CLAIMED_FOR_LABEL] === mine.fn) this.#mine.delete(p.metadata.name);
      changed(p);
    });
    this.pods.on("delete", (p) => {
      this.#agents.get(p.metadata.name)?.destroy();
      this.#agents.delete(p.metadata.name);
      changed(p);
      this.#mine.delete(p.metadata.name);
      this.#tried.delete(p.metadata.name);
    });
  }

  registerMetrics(registry: Registry): void {
    registry.registerMetric(this.#claims);
    registry.registerMetric(this.#fallbacks);
    registry.registerMetric(this.#idleGauge);
  }

  async start(): Promise<void> {
    if (!this.cfg.enabled) return;
    await this.pods.start();
    await this.#readToken().catch(() => undefined);
    this.#refresh = setInterval(() => {
      for (const p of this.pods.list()) this.#preconnect(p, true);
    }, PRECONNECT_REFRESH_MS);
    this.#refresh.unref();
  }

  stop(): void {
    this.pods.stop();
    clearInterval(this.#refresh);
    for (const a of this.#agents.values()) a.destroy();
    this.#agents.clear();
  }

  /** Opens (or, with `refresh`, renews) connections to a ready idle pool pod: ours and the gateway's. */
  #preconnect(p: PodObject, refresh = false): void {
    const name = p.metadata.name;
    const labels = p.metadata.labels ?? {};
    const ip = p.status?.podIP;
    const idle =
      labels[POOL_STATE_LABEL] === POOL_STATE_IDLE &&
      labels[CLAIMED_FOR_LABEL] === undefined &&
      !this.#mine.has(name) &&
      p.metadata.deletionTimestamp === undefined &&
      ip !== undefined &&
      isReady(p);
    if (!idle) {
      // A pod being specialized turns unready while it loads: that must not cut its request.
      if (!this.#mine.has(name) && !this.#claiming.has(name)) {
        this.#agents.get(name)?.destroy();
        this.#agents.delete(name);
      }
      return;
    }
    let agent = this.#agents.get(name);
    if (agent !== undefined && !refresh) return;
    if (agent === undefined) {
      agent = replicaAgent(PRECONNECT_REFRESH_MS * 4, 1);
      this.#agents.set(name, agent);
    }
    const req = request({ host: ip, port: RUNNER_PORT, path: "/healthz", agent }, (res) => res.resume());
    req.on("error", () => {
      this.#agents.get(name)?.destroy();
      this.#agents.delete(name);
    });
    req.end();
    // A ready pool pod means its token Secret exists (the pod reads it): have the token before any
    // claim needs it, so a claim makes no API call even when the API server is away.
    if (this.#token === undefined) void this.#readToken().catch(() => undefined);
    this.onIdlePod?.(endpointOf(p, ip));
  }

  /** Ready claimed pods serving `fn` with this code: where to route while the Deployment has none. */
  endpoints(fn: string, codeHash: string): Endpoint[] {
    const out: Endpoint[] = [];
    const seen = new Set<string>();
    for (const [name, m] of this.#mine) {
      if (m.fn !== fn || m.codeHash !== codeHash) continue;
      const pod = this.pods.get(`${this.namespace}/${name}`);
      if (pod !== undefined && (pod.metadata.deletionTimestamp !== undefined || restarted(pod))) continue;
      out.push(m.endpoint);
      seen.add(name);
    }
    for (const pod of this.pods.list()) {
      const labels = pod.metadata.labels ?? {};
      if (labels[CLAIMED_FOR_LABEL] !== fn || seen.has(pod.metadata.name)) continue;
      if (pod.metadata.annotations?.[CODE_HASH_ANNOTATION] !== codeHash) continue;
      if (pod.metadata.annotations?.[CLAIM_FAILED_ANNOTATION] !== undefined) continue;
      const ip = pod.status?.podIP;
      if (!ip || pod.metadata.deletionTimestamp !== undefined || restarted(pod) || !isReady(pod)) continue;
      out.push(endpointOf(pod, ip));
    }
    return out;
  }

  #idle(runtime: string): PodObject[] {
    const now = performance.now();
    return this.pods.list().filter((p) => {
      const labels = p.metadata.labels ?? {};
      if (labels[POOL_LABEL] !== runtime || labels[POOL_STATE_LABEL] !== POOL_STATE_IDLE) return false;
      if (labels[CLAIMED_FOR_LABEL] !== undefined || this.#mine.has(p.metadata.name)) return false;
      const tried = this.#tried.get(p.metadata.name);
      if (tried !== undefined && tried > now) return false;
      return !!p.status?.podIP && p.metadata.deletionTimestamp === undefined && isReady(p);
    });
  }

  /**
   * Specializes a pool pod as `fn` and returns its endpoint, or throws a
   * PoolFallback saying why not. The relabelling follows in the background.
   */
  async claim(fn: FunctionResource, uid: string | undefined, codeHash: string): Promise<Claimed> {
    const name = fn.metadata.name;
    const runtime = fn.spec.runtime;
    try {
      return await this.#claim(fn, uid, codeHash);
    } catch (err) {
      const fallback =
        err instanceof PoolFallback ? err : new PoolFallback("specialize_failed", (err as Error).message);
      this.#fallbacks.inc({ runtime, reason: fallback.reason });
      this.log.info(
        { fn: name, reason: fallback.reason, err: fallback.message },
        "pool: falling back to the Deployment",
      );
      throw fallback;
    }
  }

  async #claim(fn: FunctionResource, uid: string | undefined, codeHash: string): Promise<Claimed> {
    const runtime = fn.spec.runtime;
    if (!this.cfg.enabled) throw new PoolFallback("disabled", "the warm pool is turned off in this gateway");
    const t0 = performance.now();
    if ((fn.spec.secrets ?? []).length > 0) {
      throw new PoolFallback(
        "mounts",
        "the function mounts Secrets as files, which a pool pod has no volume for (ADR 0013)",
      );
    }
    // Nothing to claim: say so at once, without reading the token (an API call).
    if (this.#idle(runtime).length === 0) {
      const anyPods = this.pods.list().some((p) => p.metadata.labels?.[POOL_LABEL] === runtime);
      throw new PoolFallback(anyPods ? "empty" : "disabled", `no ready ${runtime} pool pod in ${this.namespace}`);
    }
    const token = this.#token ?? (await this.#readToken().catch(() => undefined));
    if (token === undefined) throw new PoolFallback("no_token", `no Secret ${POOL_TOKEN_SECRET} in ${this.namespace}`);
    // Env from Secrets and ConfigMaps: read now (by name; nothing is kept), sent in the specialization.
    const load = toLoadSpec(fn);
    if (hasReferences(fn.spec)) load.env = await this.#resolveEnv(fn);
    const body = JSON.stringify(load);
    let lastError = "no ready pool pod";
    for (let attempt = 0; attempt < this.cfg.maxAttempts; attempt++) {
      const idle = this.#idle(runtime);
      const candidates = idle.filter((p) => fitsPoolPod(fn, p));
      if (idle.length > 0 && candidates.length === 0) {
        throw new PoolFallback("resources", "the function's own resources exceed a pool pod's limits");
      }
      if (candidates.length === 0) break;
      const pod = candidates[Math.floor(Math.random() * candidates.length)] as PodObject;
      const ip = pod.status?.podIP as string;
      this.#tried.set(pod.metadata.name, performance.now() + 30_000);
      const t1 = performance.now();
      this.#claiming.add(pod.metadata.name);
      const answer = await this.#specialize(ip, body, token, this.#agents.get(pod.metadata.name))
        .finally(() => this.#claiming.delete(pod.metadata.name))
        .catch((err: Error) => ({
          status: 0,
          code: "",
          message: err.message,
        }));
      const t2 = performance.now();
      // The connection opened ahead served its purpose (or failed): the pod is no longer idle.
      this.#agents.get(pod.metadata.name)?.destroy();
      this.#agents.delete(pod.metadata.name);
      if (answer.status === 200) {
        this.#claims.inc({ runtime, result: "claimed" });
        const endpoint = endpointOf(pod, ip);
        this.#mine.set(pod.metadata.name, { fn: fn.metadata.name, codeHash, endpoint });
        void this.#label(pod, fn, uid, codeHash);
        return {
          endpoint,
          steps: [
            { name: "claim", ms: t1 - t0 },
            { name: "specialize", ms: t2 - t1 },
          ],
        };
      }
      lastError = `${pod.metadata.name}: ${answer.status || "no answer"} ${answer.code} ${answer.message}`.trim();
      if (answer.status === 400 || answer.code === "FUNCTION_LOAD_FAILED") {
        // The function's code does not load: another pod would say the same.
        this.#claims.inc({ runtime, result: "load_failed" });
        this.#tried.delete(pod.metadata.name);
        throw new PoolFallback("load_failed", lastError);
      }
      this.#claims.inc({ runtime, result: answer.status === 409 ? "conflict" : "error" });
      if (answer.status === 0 || answer.status >= 500) {
        // No answer, or a broken one: the runner may be stuck loading this code. Out of the pool with it.
        void this.#label(pod, fn, uid, codeHash, lastError);
        // Code that does not finish loading in time would do the same to every pod: stop here.
        if (answer.message.startsWith("no answer within")) throw new PoolFallback("specialize_failed", lastError);
      }
      // 403: not a pool runner at all (started with code); never try it again.
      if (answer.status === 403) this.#tried.set(pod.metadata.name, Number.POSITIVE_INFINITY);
      if (answer.status === 401) this.#token = undefined;
    }
    const anyPods = this.pods.list().some((p) => p.metadata.labels?.[POOL_LABEL] === runtime);
    if (lastError === "no ready pool pod") {
      throw new PoolFallback(anyPods ? "empty" : "disabled", `no ready ${runtime} pool pod in ${this.namespace}`);
    }
    throw new PoolFallback("specialize_failed", lastError);
  }

  #specialize(
    ip: string,
    body: string,
    token: string,
    agent: Agent | undefined,
  ): Promise<{ status: number; code: string; message: string }> {
    return new Promise((resolve, reject) => {
      const req = request(
        {
          agent: agent ?? false,
          host: ip,
          port: RUNNER_PORT,
          method: "POST",
          path: "/specialize",
          headers: {
            "content-type": "application/json",
            "content-length": Buffer.byteLength(body),
            authorization: `Bearer ${token}`,
          },
          timeout: this.cfg.specializeTimeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("error", reject);
          res.on("end", () => {
            const status = res.statusCode ?? 0;
            if (status === 200) {
              resolve({ status, code: "", message: "" });
              return;
            }
            let parsed: { code: string; message: string } | undefined;
            try {
              parsed = parseErrorBody(JSON.parse(Buffer.concat(chunks).toString("utf8")));
            } catch {}
            resolve({ status, code: parsed?.code ?? "", message: parsed?.message ?? "" });
          });
        },
      );
      req.on("timeout", () => req.destroy(new Error(`no answer within ${this.cfg.specializeTimeoutMs} ms`)));
      req.on("error", reject);
      req.end(body);
    });
  }

  /** Takes the pod out of the pool and gives it to the function (retried: the claim already holds). */
  async #label(
    pod: PodObject,
    fn: FunctionResource,
    uid: string | undefined,
    codeHash: string,
    failure?: string,
  ): Promise<void> {
    const patch = {
      metadata: {
        labels: { [POOL_STATE_LABEL]: POOL_STATE_CLAIMED, [CLAIMED_FOR_LABEL]: fn.metadata.name },
        annotations: {
          [CODE_HASH_ANNOTATION]: codeHash,
          [CLAIMED_AT_ANNOTATION]: new Date().toISOString(),
          ...(failure === undefined ? {} : { [CLAIM_FAILED_ANNOTATION]: failure.slice(0, 500) }),
        },
        // The function owns it now: deleting the Function deletes the pod.
        ...(uid
          ? {
              ownerReferences: [
                {
                  apiVersion: FUNCTION_API_VERSION,
                  kind: FUNCTION_KIND,
                  name: fn.metadata.name,
                  uid,
                  controller: true,
                },
              ],
            }
          : {}),
      },
    };
    const ref = { ...RESOURCES.pods, namespace: this.namespace, name: pod.metadata.name };
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        await this.client.mergePatch(ref, patch, GATEWAY_FIELD_MANAGER);
        return;
      } catch (err) {
        this.log.warn({ pod: pod.metadata.name, err: (err as Error).message, attempt }, "pool: relabel failed");
        await new Promise((r) => setTimeout(r, 200 * 2 ** attempt));
      }
    }
  }

  /** The function's environment with its references read from the API server; PoolFallback when one cannot be. */
  async #resolveEnv(fn: FunctionResource): Promise<Record<string, string>> {
    const refs = envReferences([fn.spec]);
    const wanted = new Map<string, { kind: ReferenceKind; name: string }>([
      ...refs.secrets.map((name) => [`secret/${name}`, { kind: "secret" as const, name }] as const),
      ...refs.configMaps.map((name) => [`config/${name}`, { kind: "config" as const, name }] as const),
    ]);
    const data = new Map<string, Record<string, string> | Error>();
    await Promise.all(
      [...wanted].map(async ([key, { kind, name }]) => {
        const what = kind === "secret" ? "Secret" : "ConfigMap";
        try {
          const obj = await this.client.find<{ data?: Record<string, string> }>(
            { ...(kind === "secret" ? RESOURCES.secrets : RESOURCES.configmaps), namespace: this.namespace, name },
            { timeoutMs: TOKEN_READ_TIMEOUT_MS },
          );
          if (obj === undefined) {
            data.set(key, new Error(`no ${what} ${name} in ${this.namespace}`));
            return;
          }
          const raw = obj.data ?? {};
          data.set(
            key,
            kind === "secret"
              ? Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, Buffer.from(v, "base64").toString("utf8")]))
              : raw,
          );
        } catch (err) {
          // 403: the operator has not granted this gateway `get` on it (yet), or runs without a pool.
          data.set(key, new Error(`cannot read ${what} ${name}: ${(err as Error).message}`));
        }
      }),
    );
    try {
      return resolveEnv(fn.spec, (kind, name) => {
        const got = data.get(`${kind}/${name}`);
        if (got === undefined || got instanceof Error) throw got ?? new Error(`${kind} ${name} was not read`);
        return got;
      });
    } catch (err) {
      // Never a value in the message: resolveEnv's name fields and keys, or the API's error.
      throw new PoolFallback("references", err instanceof FaasError ? err.message : (err as Error).message);
    }
  }

  async #readToken(): Promise<string | undefined> {
    const now = performance.now();
    if (now - this.#tokenReadAt < 2_000) return this.#token;
    this.#tokenReadAt = now;
    // On a cold start's path: a slow API server must not hold the claim for the client's default 30 s.
    const secret = await this.client.find<{ data?: Record<string, string> }>(
      { ...RESOURCES.secrets, namespace: this.namespace, name: POOL_TOKEN_SECRET },
      { timeoutMs: TOKEN_READ_TIMEOUT_MS },
    );
    const raw = secret?.data?.[POOL_TOKEN_KEY];
    this.#token = raw === undefined ? undefined : Buffer.from(raw, "base64").toString("utf8");
    return this.#token;
  }
}
