/**
 * The invariant between the backend and the gateway it feeds: a function with
 * a ready replica the backend announced must be routable in the gateway. A
 * mismatch that outlasts a grace period (announcements in flight, a replica
 * being retired) is a violation: counted here, logged and healed by the
 * backend, and reported by readiness until it clears.
 */
import { Counter } from "prom-client";

export type RoutingVerdict = "ok" | "pending" | "violated";

export class RoutingCheck {
  /** Function → when its mismatch was first seen. */
  readonly #since = new Map<string, number>();
  readonly #violated = new Set<string>();
  readonly violations = new Counter({
    name: "faas_routing_inconsistencies_total",
    help: "Times a ready replica known to the backend stayed unroutable in the gateway past the grace period (each healed by a resync).",
    labelNames: ["function"],
    registers: [],
  });

  constructor(private readonly opts: { graceMs: number; now?: () => number }) {}

  /** `ready`: replicas the backend announced; `routable`: replicas the gateway routes to. */
  observe(fn: string, ready: number, routable: number): RoutingVerdict {
    const now = this.opts.now?.() ?? performance.now();
    if (ready === 0 || routable > 0) {
      this.#since.delete(fn);
      this.#violated.delete(fn);
      return "ok";
    }
    const since = this.#since.get(fn);
    if (since === undefined) {
      this.#since.set(fn, now);
      return "pending";
    }
    if (now - since < this.opts.graceMs) return "pending";
    // Counted once per grace period, so a mismatch that resists healing stays visible.
    this.#since.set(fn, now);
    this.#violated.add(fn);
    this.violations.inc({ function: fn });
    return "violated";
  }

  forget(fn: string): void {
    this.#since.delete(fn);
    this.#violated.delete(fn);
  }

  /** Functions whose last check was a violation not yet seen cleared. */
  get violated(): ReadonlySet<string> {
    return this.#violated;
  }
}
