/**
 * One function's routing state in the gateway: its ready replicas with their
 * in-flight counts, and the requests parked until a replica has room.
 * Least-loaded choice, per-replica concurrency limit, bounded FIFO of waiters.
 */
import { Agent } from "node:http";
import type { FaasError, FunctionResource } from "@faas/api";
import type { ColdStep, Endpoint } from "./backend.js";
import type { FunctionTelemetry } from "./metrics.js";

export class Slot {
  inFlight = 0;
  /** Removed from routing: finishes what it has, takes nothing new. */
  retired = false;
  readonly agent: Agent;
  constructor(
    readonly id: string,
    readonly host: string,
    readonly port: number,
    agentOptions: { keepAliveMs: number; maxSockets: number },
  ) {
    this.agent = new Agent({
      keepAlive: true,
      keepAliveMsecs: agentOptions.keepAliveMs,
      maxSockets: agentOptions.maxSockets,
      maxFreeSockets: Math.min(256, agentOptions.maxSockets),
      timeout: agentOptions.keepAliveMs,
      scheduling: "lifo",
    });
  }
}

export interface ColdEpisode {
  readonly startedAt: number;
  steps: readonly ColdStep[];
  settled: boolean;
}

export interface Waiter {
  readonly parkedAt: number;
  readonly episode: ColdEpisode | undefined;
  resolve(slot: Slot): void;
  reject(err: FaasError): void;
  /** Set when it gave up (deadline, client gone) while still queued. */
  cancelled: boolean;
}

export class FunctionState {
  slots: Slot[] = [];
  readonly waiters: Waiter[] = [];
  #waitersHead = 0;
  inFlight = 0;
  /** Parked requests not yet given a replica nor given up. */
  parked = 0;
  lastActivityMs = 0;
  coldEpisode: ColdEpisode | undefined;
  scaleOutPending = false;
  coldStarts = 0;
  #rr = 0;

  constructor(
    public resource: FunctionResource,
    readonly telemetry: FunctionTelemetry,
    private readonly agentOptions: { keepAliveMs: number },
  ) {}

  get name(): string {
    return this.resource.metadata.name;
  }
  get concurrency(): number {
    return this.resource.spec.concurrency;
  }
  get queued(): number {
    return this.parked;
  }

  /** The least-loaded ready replica with room, taken; or undefined. */
  tryAcquire(): Slot | undefined {
    const slots = this.slots;
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
    if (best !== undefined) this.#take(best);
    return best;
  }

  #take(slot: Slot): void {
    slot.inFlight++;
    this.inFlight++;
  }

  enqueue(w: Waiter): void {
    this.waiters.push(w);
    this.parked++;
  }

  /** A parked request gave up; it stays in the array until dispatch skips it. */
  cancel(w: Waiter): void {
    if (w.cancelled) return;
    w.cancelled = true;
    this.parked--;
  }

  /** Gives free capacity to parked requests, oldest first. */
  dispatch(): void {
    while (this.#waitersHead < this.waiters.length) {
      const w = this.waiters[this.#waitersHead] as Waiter;
      if (w.cancelled) {
        this.#shift();
        continue;
      }
      const slot = this.tryAcquire();
      if (slot === undefined) return;
      this.#shift();
      this.parked--;
      w.resolve(slot);
    }
  }

  #shift(): void {
    this.waiters[this.#waitersHead] = undefined as unknown as Waiter;
    this.#waitersHead++;
    if (this.#waitersHead > 1024 && this.#waitersHead * 2 > this.waiters.length) {
      this.waiters.splice(0, this.#waitersHead);
      this.#waitersHead = 0;
    }
  }

  /** Rejects every parked request (scale-up failed, function deleted, shutdown). */
  rejectAll(err: FaasError): number {
    let n = 0;
    while (this.#waitersHead < this.waiters.length) {
      const w = this.waiters[this.#waitersHead] as Waiter;
      this.#shift();
      if (!w.cancelled) {
        n++;
        this.parked--;
        w.reject(err);
      }
    }
    return n;
  }

  release(slot: Slot): void {
    slot.inFlight--;
    this.inFlight--;
    if (slot.retired) {
      if (slot.inFlight === 0) slot.agent.destroy();
      return;
    }
    if (this.#waitersHead < this.waiters.length) this.dispatch();
  }

  /** Replaces the replica list; known replicas keep their counts and sockets. */
  setEndpoints(endpoints: readonly Endpoint[]): void {
    const old = new Map(this.slots.map((s) => [s.id, s]));
    const next: Slot[] = [];
    for (const e of endpoints) {
      const existing = old.get(e.id);
      if (existing !== undefined && existing.host === e.host && existing.port === e.port && !existing.retired) {
        next.push(existing);
        old.delete(e.id);
      } else {
        next.push(new Slot(e.id, e.host, e.port, { keepAliveMs: this.agentOptions.keepAliveMs, maxSockets: 1024 }));
      }
    }
    for (const gone of old.values()) this.#retire(gone);
    this.slots = next;
    this.dispatch();
  }

  /** Takes one replica out of routing at once (it failed or is draining). */
  retire(id: string): boolean {
    const slot = this.slots.find((s) => s.id === id);
    if (slot === undefined) return false;
    this.slots = this.slots.filter((s) => s !== slot);
    this.#retire(slot);
    return true;
  }

  #retire(slot: Slot): void {
    slot.retired = true;
    if (slot.inFlight === 0) slot.agent.destroy();
  }

  close(): void {
    for (const s of this.slots) this.#retire(s);
    this.slots = [];
  }
}
