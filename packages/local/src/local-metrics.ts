/** The local backend's own Prometheus metrics, added to the gateway's registry. */
import type { Runtime } from "@faas/api";
import { Counter, Gauge, type Registry } from "prom-client";
import type { WarmPool } from "./warm-pool.js";

export class LocalMetrics {
  readonly specializations = new Counter({
    name: "faas_specializations_total",
    help: "Runners specialized as a function (local backend).",
    labelNames: ["function"],
    registers: [],
  });
  readonly crashes = new Counter({
    name: "faas_runner_exits_unexpected_total",
    help: "Runners that exited without being asked to (crash, timeout poisoning).",
    labelNames: ["function"],
    registers: [],
  });
  readonly loadTimeouts = new Counter({
    name: "faas_load_timeouts_total",
    help: "Loads (trial loads and specializations) killed at the load timeout.",
    labelNames: ["function"],
    registers: [],
  });

  register(registry: Registry, pool: WarmPool, runtimes: readonly Runtime[]): void {
    registry.registerMetric(this.specializations);
    registry.registerMetric(this.crashes);
    registry.registerMetric(this.loadTimeouts);
    registry.registerMetric(
      new Gauge({
        name: "faas_warm_pool_idle_runners",
        help: "Generic runners waiting in the warm pool.",
        labelNames: ["runtime"],
        registers: [],
        collect() {
          for (const r of runtimes) this.set({ runtime: r }, pool.idleCount(r));
        },
      }),
    );
  }
}
