/**
 * What the gateway needs from a backend: where a function's ready replicas are,
 * and how to get more. The local backend (processes) and the Kubernetes backend
 * (Deployments, EndpointSlices) both implement it.
 */
import type { Readable } from "node:stream";
import type { ApiKeyRecord, FunctionResource } from "@faas/api";
import type { Registry } from "prom-client";

export interface Endpoint {
  /** Stable for the life of the replica (pid, pod name, …). */
  readonly id: string;
  readonly host: string;
  readonly port: number;
}

/** One step of a cold start, as it appears in `server-timing` (`<name>;dur=<ms>`). */
export interface ColdStep {
  /** A server-timing metric name: `scaleup`, `specialize`, `claim`, `scheduled`, … */
  readonly name: string;
  readonly ms: number;
}

/** Where a cold start's time went, as far as the backend can tell, in order. */
export interface ScaleUpResult {
  /**
   * Local mode: `scaleup` (claiming a pooled runner or spawning one), `specialize`
   * (the load's round trip) and `import` (the part of it the runner spent importing
   * the code). Kubernetes: the steps of the path that served it (pool claim,
   * or scale request, pod scheduled, container started, runner ready).
   */
  steps: readonly ColdStep[];
}

/** The gateway's view of traffic, read by backends that scale on it. */
export interface LoadView {
  inFlight(fn: string): number;
  queued(fn: string): number;
  /** `performance.now()` of the last request start or end; 0 if never. */
  lastActivityMs(fn: string): number;
  /** Requests in flight on one replica (0 for one the gateway does not know). */
  endpointInFlight(fn: string, endpointId: string): number;
  /** Replicas the gateway routes to now: a backend checks it against what it announced. */
  routableEndpoints?(fn: string): number;
}

export interface BackendListener {
  endpointsChanged(fn: string, endpoints: readonly Endpoint[]): void;
  functionChanged(fn: string, resource: FunctionResource | undefined): void;
  /**
   * A replica that is likely to serve soon (a pooled runner, before any claim):
   * the gateway opens a connection to it now, so the first request routed to it
   * does not pay for one. A hint; calling it again refreshes the connection.
   */
  preconnect?(endpoint: Endpoint): void;
  /**
   * A replica has been asked to load `fn` and holds invocations sent with
   * `x-faas-await-load: <fn> <ms>` until the load is done (docs/runner-protocol.md):
   * the gateway may send parked requests to it now rather than after the load.
   * `loaded` resolves once the backend has announced the replica with
   * `endpointsChanged`, and rejects with the load's error (the one `scaleUp`
   * rejects with) when it will not be announced, or with `LoadSuperseded` when
   * the function's code changed while it loaded (the requests it sends back
   * then wait for a replica of the new code). `steps`: the scale-up's steps so
   * far (e.g. `scaleup`, the claim), for the server-timing of an answer the
   * replica gives before `scaleUp` resolves (the gateway relays it at once).
   */
  endpointLoading?(fn: string, endpoint: Endpoint, loaded: Promise<void>, steps?: readonly ColdStep[]): void;
}

export interface FunctionStatus {
  name: string;
  runtime: string;
  readyReplicas: number;
  desiredReplicas: number;
  minReplicas: number;
  maxReplicas: number;
}

export interface LogOptions {
  follow: boolean;
  tailLines: number;
  signal: AbortSignal;
}

/** Where the gateway finds the API keys of functions with `spec.auth: apiKey` (ADR 0011). */
export interface KeyLookup {
  /** The record of key `id` when it is a current key of function `fn`; undefined otherwise. */
  apiKey(fn: string, id: string): ApiKeyRecord | undefined;
  /** How many current keys `fn` has (shown by `faas list`). */
  apiKeyCount(fn: string): number;
}

/** A key as the admin API shows it: never the key, nor its hash. */
export type ApiKeyInfo = Omit<ApiKeyRecord, "sha256" | "functionUid">;

/** Creating, listing and revoking keys, for backends that keep them themselves (local mode). */
export interface KeyAdmin {
  /** Rejects with FUNCTION_NOT_FOUND for an unknown function. `key` is returned here and never again. */
  create(fn: string): Promise<{ key: string; info: ApiKeyInfo }>;
  list(fn?: string): ApiKeyInfo[];
  /** `false` when there was no such key. */
  revoke(id: string): Promise<boolean>;
}

/** Management operations, for backends that own function definitions (local mode). */
export interface BackendAdmin {
  /** Validated resource in, `true` when it was new. */
  deploy(resource: FunctionResource): Promise<boolean>;
  /** `false` when there was no such function. */
  remove(name: string): Promise<boolean>;
  logs(name: string, options: LogOptions): Readable;
  /** Secrets and configs, for backends that keep their own (local mode). Listings name keys, never values. */
  listValues?(kind: ValueKind): { name: string; keys: string[] }[];
  /** Stores the keys, then rolls the functions that refer to `name`; says which. */
  setValues?(kind: ValueKind, name: string, data: Record<string, string>, replace: boolean): Promise<object>;
  /** `false` when there was no such set; refused while a function refers to it. */
  deleteValues?(kind: ValueKind, name: string): Promise<boolean>;
  readonly keys?: KeyAdmin;
}

export type ValueKind = "secret" | "config";

export interface Backend {
  readonly kind: string;
  start(listener: BackendListener, load: LoadView): Promise<void>;
  /** Stops replicas and watches; the gateway has drained its requests first. */
  stop(): Promise<void>;
  getFunction(name: string): FunctionResource | undefined;
  listFunctions(): FunctionResource[];
  status(name: string): FunctionStatus | undefined;
  /**
   * Makes at least `replicas` replicas exist (clamped to maxReplicas), idempotent.
   * Resolves once at least one replica is ready, after `endpointsChanged` has
   * announced it. Rejects with a FaasError when that cannot happen.
   */
  scaleUp(fn: string, replicas: number): Promise<ScaleUpResult>;
  /** The gateway could not reach a replica, or it announced it is draining. */
  endpointFailed(fn: string, endpointId: string, reason: string): void;
  readonly admin?: BackendAdmin;
  /** API keys; without it, functions with `auth: apiKey` refuse every request. */
  readonly keys?: KeyLookup;
  /** Adds the backend's own metrics to the gateway's registry. */
  registerMetrics?(registry: Registry): void;
  /**
   * A namespace other than the default one whose functions this backend
   * serves under `<namespace>/<name>` keys (`/invoke/<namespace>/<name>`).
   */
  servesNamespace?(namespace: string): boolean;
  /** False while the backend's view cannot be trusted (caches not synced, or found inconsistent); `/readyz` says so. */
  ready?(): boolean;
}

/**
 * Why a loading replica's `loaded` rejects when the function's code changed
 * while it loaded: it takes no more requests, and those it sends back unrun
 * are queued again rather than failed.
 */
export class LoadSuperseded extends Error {
  override readonly name = "LoadSuperseded";
}
