/**
 * Idle generic runners, per runtime, so that a cold start is a specialization
 * (milliseconds) rather than a process start. Refilled in the background.
 */
import type { Runtime } from "@faas/api";
import type { Logger } from "pino";
import type { RunnerProcess } from "./runner-process.js";

export type SpawnRunner = (runtime: Runtime) => Promise<RunnerProcess>;

/** How often idle runners' connections are refreshed (below the gateway's 30 s and the runners' 75 s idle timeouts). */
const REFRESH_MS = 20_000;

export class WarmPool {
  readonly #idle = new Map<Runtime, RunnerProcess[]>();
  readonly #starting = new Map<Runtime, number>();
  readonly #refillTimers = new Map<Runtime, NodeJS.Timeout>();
  #stopped = false;
  #refresher: NodeJS.Timeout | undefined;
  spawned = 0;

  constructor(
    private readonly runtimes: readonly Runtime[],
    private readonly size: number,
    private readonly spawnRunner: SpawnRunner,
    private readonly log: Logger,
    private readonly refillDelayMs = 100,
    /** Called for each runner that joins the pool, and again every 20 s while it waits there. */
    private readonly onIdle: (runner: RunnerProcess) => void = () => {},
  ) {
    for (const r of runtimes) {
      this.#idle.set(r, []);
      this.#starting.set(r, 0);
    }
  }

  /** Fills every runtime's pool; resolves when the first fill is done. */
  async start(): Promise<void> {
    await Promise.all(this.runtimes.map((r) => this.#refill(r)));
    this.#refresher = setInterval(() => {
      for (const list of this.#idle.values()) for (const r of list) this.onIdle(r);
    }, REFRESH_MS);
    this.#refresher.unref();
  }

  idleCount(runtime: Runtime): number {
    return this.#idle.get(runtime)?.length ?? 0;
  }

  /** An idle generic runner (or a fresh one when the pool is empty); `pooled` says which. */
  async claim(runtime: Runtime): Promise<{ runner: RunnerProcess; pooled: boolean }> {
    const idle = this.#idle.get(runtime) ?? [];
    let runner = idle.pop();
    while (runner !== undefined && !runner.alive) runner = idle.pop();
    this.#refillSoon(runtime);
    if (runner !== undefined) return { runner, pooled: true };
    this.spawned++;
    return { runner: await this.spawnRunner(runtime), pooled: false };
  }

  /** A runner that is still generic (its specialization failed) goes back. */
  giveBack(runner: RunnerProcess): void {
    if (this.#stopped || !runner.alive || runner.stopRequested || runner.state !== "generic") {
      void runner.stop(1000);
      return;
    }
    const idle = this.#idle.get(runner.runtime);
    if (idle !== undefined && idle.length < this.size) {
      idle.push(runner);
      this.onIdle(runner);
    } else void runner.stop(1000);
  }

  /**
   * A process start takes the CPU that the claimed runner needs right now for
   * its specialization and first request (2 cores): refill a moment later.
   */
  #refillSoon(runtime: Runtime): void {
    if (this.#refillTimers.has(runtime) || this.#stopped) return;
    const timer = setTimeout(() => {
      this.#refillTimers.delete(runtime);
      void this.#refill(runtime);
    }, this.refillDelayMs);
    this.#refillTimers.set(runtime, timer);
  }

  async #refill(runtime: Runtime): Promise<void> {
    const idle = this.#idle.get(runtime) as RunnerProcess[];
    const missing = this.size - idle.length - (this.#starting.get(runtime) ?? 0);
    if (missing <= 0 || this.#stopped) return;
    this.#starting.set(runtime, (this.#starting.get(runtime) ?? 0) + missing);
    await Promise.all(
      Array.from({ length: missing }, async () => {
        try {
          const runner = await this.spawnRunner(runtime);
          this.spawned++;
          if (this.#stopped) {
            void runner.stop(1000);
            return;
          }
          runner.once("exit", () => {
            const i = idle.indexOf(runner);
            if (i >= 0) {
              idle.splice(i, 1);
              if (!this.#stopped) void this.#refill(runtime);
            }
          });
          idle.push(runner);
          this.onIdle(runner);
        } catch (err) {
          this.log.error({ runtime, err: (err as Error).message }, "warm pool could not start a runner");
        } finally {
          this.#starting.set(runtime, (this.#starting.get(runtime) ?? 1) - 1);
        }
      }),
    );
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#refresher);
    for (const t of this.#refillTimers.values()) clearTimeout(t);
    this.#refillTimers.clear();
    const all = [...this.#idle.values()].flat();
    for (const list of this.#idle.values()) list.length = 0;
    await Promise.all(all.map((r) => r.stop(2000)));
  }
}
