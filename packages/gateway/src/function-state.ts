/**
 * One function's routing state in the gateway, and the only code that changes
 * it: its ready replicas with their in-flight counts, the requests parked
 * until a replica has room (bounded FIFO, least-loaded choice, per-replica
 * concurrency limit), and its cold episode. Capacity is handed out as a
 * `Lease`, whose `release()` is idempotent.
 */
import { Agent } from "node:http";
import { FaasError, type FunctionResource } from "@faas/api";
import type { ColdStep, Endpoint } from "./backend.js";
import type { FunctionTelemetry } from "./metrics.js";

export class Slot {
  inFlight = 0;
  /** Removed from routing: finishes what it has, takes nothing new. */
  retired = false;
  /**
   * Set while the replica is loading the function (announced with
   * `endpointLoading`): requests sent now wait in the runner for the load. The
   * backend's promise: resolves once the replica is announced, rejects with the load's error.
   */
  loading: Promise<void> | undefined;
  /** `performance.now()` when the replica was said to be loading, and the backend's steps until then. */
  loadingSince: number | undefined;
  loadingSteps: readonly ColdStep[] | undefined;
  /** `performance.now()` when a loading replica was announced ready. */
  readyAt: number | undefined;
  readonly agent: Agent;
  constructor(
    readonly id: string,
    readonly host: string,
    readonly port: number,
    agent: Agent,
  ) {
    this.agent = agent;
  }
}

/** The keep-alive pool to one replica, made once per replica. */
export function replicaAgent(keepAliveMs: number, maxSockets = 1024): Agent {
  return new Agent({
    keepAlive: true,
    keepAliveMsecs: keepAliveMs,
    maxSockets,
    maxFreeSockets: Math.min(256, maxSockets),
    timeout: keepAliveMs,
    scheduling: "lifo",
  });
}

/**
 * One scale-from-zero: opened by the first request that finds no replica,
 * closed when the backend's scale-up settles. The steps are the backend's.
 */
export class ColdEpisode {
  readonly startedAt = performance.now();
  #steps: readonly ColdStep[] | undefined;
  #settled = false;

  get settled(): boolean {
    return this.#settled;
  }
  /** The backend's steps; undefined until the scale-up has resolved. */
  get steps(): readonly ColdStep[] | undefined {
    return this.#steps;
  }

  /** @internal FunctionState only. */
  settle(steps: readonly ColdStep[] | undefined): void {
    this.#settled = true;
    this.#steps = steps;
  }
}

/** What a request learned about the cold start that served it. */
export interface ColdTimings {
  /** When the request was parked. */
  readonly parkedAt: number;
  /** Time the request waited parked for a replica (for one still loading: until it was handed it). */
  readonly parkedMs: number;
  /** The episode it waited on, when it opened or joined one (a cold start). */
  readonly episode: ColdEpisode | undefined;
}

/** Capacity on one replica, held by one request until `release()` (idempotent). */
export class Lease {
  #released = false;
  constructor(
    readonly slot: Slot,
    readonly timings: ColdTimings | undefined,
    private readonly owner: FunctionState,
  ) {}

  get released(): boolean {
    return this.#released;
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.owner.returnSlot(this.slot);
  }
}

/** A parked request. Settles exactly once: with a lease, or with an error. */
export interface Parked {
  readonly promise: Promise<Lease>;
  /** Gives up (client gone, deadline): the promise rejects with `err`. No-op once settled. */
  cancel(err: FaasError): void;
}

interface Waiter {
  readonly parkedAt: number;
  readonly episode: ColdEpisode | undefined;
  settled: boolean;
  resolve(lease: Lease): void;
  reject(err: FaasError): void;
}

export class FunctionState {
  #resource: FunctionResource;
  #slots: Slot[] = [];
  /** Replicas loading the function that already take requests (`addLoading`). */
  #loading: Slot[] = [];
  readonly #waiters: Array<Waiter | undefined> = [];
  #waitersHead = 0;
  #inFlight = 0;
  /** Parked requests not yet given a replica nor given up. */
  #parked = 0;
  #lastActivityMs = 0;
  #coldEpisode: ColdEpisode | undefined;
  #coldStarts = 0;
  #scaleOutPending = false;
  #rr = 0;

  constructor(
    resource: FunctionResource,
    readonly telemetry: FunctionTelemetry,
    /** The connection pool for a new replica (a pre-opened one when the gateway has it). */
    private readonly agentFor: (endpoint: Endpoint) => Agent,
  ) {
    this.#resource = resource;
  }

  get name(): string {
    return this.#resource.metadata.name;
  }
  get resource(): FunctionResource {
    return this.#resource;
  }
  get concurrency(): number {
    return this.#resource.spec.concurrency;
  }
  get inFlight(): number {
    return this.#inFlight;
  }
  get queued(): number {
    return this.#parked;
  }
  get ready(): number {
    return this.#slots.length;
  }
  get coldStarts(): number {
    return this.#coldStarts;
  }
  get lastActivityMs(): number {
    return this.#lastActivityMs;
  }
  get coldEpisodeOpen(): boolean {
    return this.#coldEpisode !== undefined;
  }
  endpointInFlight(id: string): number {
    return this.#slots.find((s) => s.id === id)?.inFlight ?? 0;
  }

  /** A request started or ended now (idle scaling reads it). */
  touch(nowMs: number): void {
    this.#lastActivityMs = nowMs;
  }

  /** The spec changed (same function): parked requests may fit under a new concurrency. */
  update(resource: FunctionResource): void {
    this.#resource = resource;
    this.#dispatch();
  }

  /** The least-loaded ready replica with room, as a lease; or undefined. */
  tryAcquire(): Lease | undefined {
    const slot = this.#pick();
    return slot === undefined ? undefined : new Lease(slot, undefined, this);
  }

  #pick(): Slot | undefined {
    const slots = this.#slots;
    const n = slots.length;
    if (n === 0) return undefined;
    const start = this.#rr++ % n;
    let best: Slot | undefined;
    for (let i = 0; i < n; i++) {
      const s = slots[(start + i) % n] as Slot;
      if (s.inFlight < this.concurrency && (best === undefined || s.inFlight < best.inFlight)) {
        best = s;
        if (s.inFlight === 0) break;
      }
    }
    if (best !== undefined) {
      best.inFlight++;
      this.#inFlight++;
    }
    return best;
  }

  /** The first loading replica with room, for a parked request; or undefined. */
  #pickLoading(): Slot | undefined {
    for (const s of this.#loading) {
      if (s.inFlight < this.concurrency) {
        s.inFlight++;
        this.#inFlight++;
        return s;
      }
    }
    return undefined;
  }

  /**
   * A replica that is loading the function and holds requests until it is
   * done: parked requests go to it now. It becomes routable with
   * `setEndpoints`; it is dropped when `loaded` rejects (the requests sent to
   * it come back unanswered, and their callers see the load's error).
   */
  addLoading(endpoint: Endpoint, loaded: Promise<void>, steps?: readonly ColdStep[]): void {
    if (this.#slots.some((s) => s.id === endpoint.id) || this.#loading.some((s) => s.id === endpoint.id)) return;
    const slot = new Slot(endpoint.id, endpoint.host, endpoint.port, this.agentFor(endpoint));
    slot.loading = loaded;
    slot.loadingSince = performance.now();
    slot.loadingSteps = steps;
    this.#loading.push(slot);
    const drop = (): void => {
      const i = this.#loading.indexOf(slot);
      if (i < 0) return;
      this.#loading.splice(i, 1);
      this.#retire(slot);
    };
    // Announced: setEndpoints has made it routable already; anything else, it goes.
    loaded.then(drop, drop);
    this.#dispatch();
  }

  /** @internal Lease.release only. */
  returnSlot(slot: Slot): void {
    slot.inFlight--;
    this.#inFlight--;
    if (slot.retired) {
      if (slot.inFlight === 0) slot.agent.destroy();
      return;
    }
    if (this.#waitersHead < this.#waiters.length) this.#dispatch();
  }

  /**
   * Parks a request until a replica has room or `budgetMs` passes (then it
   * rejects with DEADLINE_EXCEEDED). The caller has checked the bounds and
   * opened a cold episode if one was needed.
   */
  park(budgetMs: number, onSettled: () => void): Parked {
    const parkedAt = performance.now();
    let waiter!: Waiter;
    let timer: NodeJS.Timeout | undefined;
    const promise = new Promise<Lease>((resolve, reject) => {
      waiter = {
        parkedAt,
        episode: this.#coldEpisode,
        settled: false,
        resolve: (lease) => {
          clearTimeout(timer);
          onSettled();
          resolve(lease);
        },
        reject: (err) => {
          clearTimeout(timer);
          onSettled();
          reject(err);
        },
      };
    });
    const cancel = (err: FaasError): void => {
      if (waiter.settled) return;
      waiter.settled = true;
      this.#parked--;
      waiter.reject(err);
    };
    timer = setTimeout(() => {
      const why = this.#slots.length === 0 ? "no replica became ready" : "all replicas stayed busy";
      cancel(new FaasError("DEADLINE_EXCEEDED", `waited ${budgetMs} ms for a replica of ${this.name}: ${why}`));
    }, budgetMs);
    this.#waiters.push(waiter);
    this.#parked++;
    // A backend may have announced a replica while this request was being parked.
    if (this.#slots.length > 0 || this.#loading.length > 0) this.#dispatch();
    return { promise, cancel };
  }

  /** Gives free capacity to parked requests, oldest first. */
  #dispatch(): void {
    while (this.#waitersHead < this.#waiters.length) {
      const w = this.#waiters[this.#waitersHead] as Waiter;
      if (w.settled) {
        this.#shift();
        continue;
      }
      const slot = this.#pick() ?? this.#pickLoading();
      if (slot === undefined) return;
      this.#shift();
      this.#parked--;
      w.settled = true;
      const timings = { parkedAt: w.parkedAt, parkedMs: performance.now() - w.parkedAt, episode: w.episode };
      w.resolve(new Lease(slot, timings, this));
    }
  }

  #shift(): void {
    this.#waiters[this.#waitersHead] = undefined;
    this.#waitersHead++;
    if (this.#waitersHead > 1024 && this.#waitersHead * 2 > this.#waiters.length) {
      this.#waiters.splice(0, this.#waitersHead);
      this.#waitersHead = 0;
    }
  }

  /** Rejects every parked request (scale-up failed, function deleted, shutdown); returns how many. */
  rejectAll(err: FaasError): number {
    let n = 0;
    while (this.#waitersHead < this.#waiters.length) {
      const w = this.#waiters[this.#waitersHead] as Waiter;
      this.#shift();
      if (!w.settled) {
        w.settled = true;
        n++;
        this.#parked--;
        w.reject(err);
      }
    }
    return n;
  }

  /** Opens a cold episode unless one is open; returns the new one, or undefined. */
  openColdEpisode(): ColdEpisode | undefined {
    if (this.#coldEpisode !== undefined) return undefined;
    const episode = new ColdEpisode();
    this.#coldEpisode = episode;
    this.#coldStarts++;
    return episode;
  }

  /** The backend's scale-up for `episode` settled (steps when it succeeded). */
  closeColdEpisode(episode: ColdEpisode, steps: readonly ColdStep[] | undefined): void {
    episode.settle(steps);
    if (this.#coldEpisode === episode) this.#coldEpisode = undefined;
  }

  /** Marks a load-driven scale-out in progress; false if one already is. */
  beginScaleOut(): boolean {
    if (this.#scaleOutPending) return false;
    this.#scaleOutPending = true;
    return true;
  }
  endScaleOut(): void {
    this.#scaleOutPending = false;
  }

  /** Replaces the replica list; known replicas keep their counts and sockets. */
  setEndpoints(endpoints: readonly Endpoint[]): void {
    const old = new Map(this.#slots.map((s) => [s.id, s]));
    const next: Slot[] = [];
    for (const e of endpoints) {
      const existing = old.get(e.id);
      const loading = this.#loading.find((s) => s.id === e.id && s.host === e.host && s.port === e.port);
      if (existing !== undefined && existing.host === e.host && existing.port === e.port && !existing.retired) {
        next.push(existing);
        old.delete(e.id);
      } else if (loading !== undefined) {
        // Loaded: routable now, with the requests it already holds.
        this.#loading.splice(this.#loading.indexOf(loading), 1);
        loading.loading = undefined;
        loading.readyAt = performance.now();
        next.push(loading);
      } else {
        next.push(new Slot(e.id, e.host, e.port, this.agentFor(e)));
      }
    }
    for (const gone of old.values()) this.#retire(gone);
    this.#slots = next;
    this.#dispatch();
  }

  /** Takes one replica out of routing at once (it failed or is draining). */
  retire(id: string): boolean {
    const loading = this.#loading.find((s) => s.id === id);
    if (loading !== undefined) {
      this.#loading = this.#loading.filter((s) => s !== loading);
      this.#retire(loading);
    }
    const slot = this.#slots.find((s) => s.id === id);
    if (slot === undefined) return loading !== undefined;
    this.#slots = this.#slots.filter((s) => s !== slot);
    this.#retire(slot);
    return true;
  }

  #retire(slot: Slot): void {
    slot.retired = true;
    if (slot.inFlight === 0) slot.agent.destroy();
  }

  close(): void {
    for (const s of [...this.#slots, ...this.#loading]) this.#retire(s);
    this.#slots = [];
    this.#loading = [];
  }
}
