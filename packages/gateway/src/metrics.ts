/**
 * Prometheus metrics of the gateway. Per-function children are created once per
 * function and cached, so the hot path does no label lookups; gauges are
 * computed at scrape time from live state.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { LatencyWindow } from "./latency-window.js";

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export interface FunctionGaugeSource {
  forEachFunction(
    visit: (fn: string, s: { inFlight: number; queued: number; ready: number; desired: number }) => void,
  ): void;
}

export class GatewayMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<"function" | "code">;
  readonly duration: Histogram<"function">;
  readonly coldStarts: Counter<"function">;
  readonly coldStartDuration: Histogram<"function">;
  readonly scaleUps: Counter<"function" | "reason">;
  readonly parkRejections: Counter<"function" | "reason">;
  readonly retries: Counter<"function">;

  constructor(source: FunctionGaugeSource, opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: "faas_gateway_" });
    this.requests = new Counter({
      name: "faas_requests_total",
      help: "Invocations answered by the gateway, by HTTP status code.",
      labelNames: ["function", "code"],
      registers,
    });
    this.duration = new Histogram({
      name: "faas_request_duration_seconds",
      help: "Invocation latency seen by the gateway, parking included.",
      labelNames: ["function"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.coldStarts = new Counter({
      name: "faas_cold_starts_total",
      help: "Cold episodes: a request found no ready replica and one scale-up was triggered.",
      labelNames: ["function"],
      registers,
    });
    this.coldStartDuration = new Histogram({
      name: "faas_cold_start_duration_seconds",
      help: "From the first parked request of a cold episode to a ready replica.",
      labelNames: ["function"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.scaleUps = new Counter({
      name: "faas_scale_up_requests_total",
      help: "Scale-up requests the gateway sent to its backend (reason: cold or load).",
      labelNames: ["function", "reason"],
      registers,
    });
    this.parkRejections = new Counter({
      name: "faas_parked_rejected_total",
      help: "Requests refused or dropped while parked (reason: overflow, deadline, scale_up_failed).",
      labelNames: ["function", "reason"],
      registers,
    });
    this.retries = new Counter({
      name: "faas_upstream_retries_total",
      help: "Requests re-sent to another replica after a connection that never reached the runner.",
      labelNames: ["function"],
      registers,
    });
    const gauge = (
      name: string,
      help: string,
      pick: (s: { inFlight: number; queued: number; ready: number; desired: number }) => number,
    ) =>
      new Gauge({
        name,
        help,
        labelNames: ["function"],
        registers,
        collect() {
          this.reset();
          source.forEachFunction((fn, s) => this.set({ function: fn }, pick(s)));
        },
      });
    gauge("faas_in_flight_requests", "Requests being served by replicas now.", (s) => s.inFlight);
    gauge("faas_parked_requests", "Requests waiting for a replica now.", (s) => s.queued);
    gauge("faas_replicas_ready", "Replicas the gateway routes to.", (s) => s.ready);
    gauge("faas_replicas_desired", "Replicas the backend is asked to keep.", (s) => s.desired);
  }
}

/** One function's metric children, resolved once so a request costs no label lookups. */
export class FunctionTelemetry {
  readonly latency = new LatencyWindow();
  readonly #duration: Histogram.Internal<"function">;
  readonly #codes = new Map<number, Counter.Internal>();
  constructor(
    private readonly fn: string,
    private readonly metrics: GatewayMetrics,
  ) {
    this.#duration = metrics.duration.labels(fn);
  }

  observe(status: number, ms: number): void {
    let c = this.#codes.get(status);
    if (c === undefined) {
      c = this.metrics.requests.labels(this.fn, String(status));
      this.#codes.set(status, c);
    }
    c.inc();
    this.#duration.observe(ms / 1000);
    this.latency.record(ms);
  }
}
