/**
 * Bounds the scale requests one gateway sends per function: one scale-up in
 * flight (callers asking meanwhile share its outcome), and a growing delay
 * when scale-ups keep answering at once — a function that already had a
 * routable endpoint is asked for again only when the gateway could not route
 * to it, and hammering the API server would not change that.
 */
import { Counter } from "prom-client";

export interface ScaleGateOptions {
  /** First delay after a scale-up that answered at once; doubles per repeat. */
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** A repeat further apart than this starts the count again. */
  repeatWindowMs: number;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

export interface GatedOutcome<R> {
  result: R;
  /** True when there was already a ready endpoint: nothing had to start. */
  immediate: boolean;
}

export class ScaleGate<R> {
  readonly #inFlight = new Map<string, Promise<R>>();
  readonly #repeats = new Map<string, { count: number; lastAt: number }>();
  readonly #now: () => number;
  readonly #sleep: (ms: number) => Promise<void>;
  readonly backoffs = new Counter({
    name: "faas_scale_up_backoffs_total",
    help: "Scale-ups delayed because the previous ones found a ready endpoint the gateway did not route to.",
    labelNames: ["function"],
    registers: [],
  });

  constructor(private readonly opts: ScaleGateOptions) {
    this.#now = opts.now ?? (() => performance.now());
    this.#sleep = opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
  }

  /** Runs `work` for `fn` unless a run is in flight, in which case its outcome is shared. */
  run(fn: string, work: () => Promise<GatedOutcome<R>>): Promise<R> {
    const running = this.#inFlight.get(fn);
    if (running !== undefined) return running;
    const p = this.#gated(fn, work).finally(() => this.#inFlight.delete(fn));
    this.#inFlight.set(fn, p);
    return p;
  }

  /** How long the next run for `fn` would wait (0: none). */
  delayMs(fn: string): number {
    const r = this.#repeats.get(fn);
    if (r === undefined || this.#now() - r.lastAt > this.opts.repeatWindowMs) return 0;
    return Math.min(this.opts.backoffMaxMs, this.opts.backoffBaseMs * 2 ** Math.min(r.count - 1, 16));
  }

  forget(fn: string): void {
    this.#repeats.delete(fn);
  }

  async #gated(fn: string, work: () => Promise<GatedOutcome<R>>): Promise<R> {
    const delay = this.delayMs(fn);
    if (delay > 0) {
      this.backoffs.inc({ function: fn });
      await this.#sleep(delay);
    }
    const outcome = await work();
    if (outcome.immediate) {
      const r = this.#repeats.get(fn);
      const fresh = r === undefined || this.#now() - r.lastAt > this.opts.repeatWindowMs;
      this.#repeats.set(fn, { count: fresh ? 1 : r.count + 1, lastAt: this.#now() });
    } else {
      this.#repeats.delete(fn);
    }
    return outcome.result;
  }
}
