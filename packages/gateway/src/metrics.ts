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
  /** Request telemetry of every function the gateway has routed to. */
  forEachTelemetry(visit: (fn: string, t: FunctionTelemetry) => void): void;
}

export class GatewayMetrics {
  readonly registry = new Registry();
  readonly coldStarts: Counter<"function">;
  readonly coldStartDuration: Histogram<"function">;
  readonly scaleUps: Counter<"function" | "reason">;
  readonly parkRejections: Counter<"function" | "reason">;
  readonly retries: Counter<"function">;
  readonly authRefusals: Counter<"function" | "code">;

  constructor(source: FunctionGaugeSource, opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: "faas_gateway_" });
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
    this.authRefusals = new Counter({
      name: "faas_auth_refusals_total",
      help: "Invocations of auth: apiKey functions refused (code: UNAUTHORIZED without a key, FORBIDDEN with a wrong one).",
      labelNames: ["function", "code"],
      registers,
    });
    this.registry.registerMetric(requestsMetric(source) as never);
    this.registry.registerMetric(durationMetric(source) as never);
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

/**
 * One function's request counts and latency histogram, kept as plain numbers
 * so a request costs a few additions; exported at scrape time.
 */
export class FunctionTelemetry {
  readonly latency = new LatencyWindow();
  readonly codes = new Map<number, number>();
  readonly buckets = new Float64Array(LATENCY_BUCKETS.length);
  count = 0;
  sumSeconds = 0;

  observe(status: number, ms: number): void {
    this.codes.set(status, (this.codes.get(status) ?? 0) + 1);
    const seconds = ms / 1000;
    this.count++;
    this.sumSeconds += seconds;
    for (let i = 0; i < LATENCY_BUCKETS.length; i++) {
      if (seconds <= (LATENCY_BUCKETS[i] as number)) {
        (this.buckets as Float64Array)[i] = (this.buckets[i] as number) + 1;
        break;
      }
    }
    this.latency.record(ms);
  }
}

interface MetricValue {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

/** A metric the registry can print: what prom-client's own metrics return from get(). */
function customMetric(name: string, help: string, type: "counter" | "histogram", values: () => MetricValue[]) {
  return {
    name,
    help,
    type,
    aggregator: "sum",
    get: async () => ({ name, help, type, aggregator: "sum", values: values() }),
    reset() {},
  };
}

function requestsMetric(source: FunctionGaugeSource) {
  return customMetric(
    "faas_requests_total",
    "Invocations answered by the gateway, by HTTP status code.",
    "counter",
    () => {
      const out: MetricValue[] = [];
      source.forEachTelemetry((fn, t) => {
        for (const [code, n] of t.codes) out.push({ labels: { function: fn, code }, value: n });
      });
      return out;
    },
  );
}

function durationMetric(source: FunctionGaugeSource) {
  const name = "faas_request_duration_seconds";
  return customMetric(name, "Invocation latency seen by the gateway, parking included.", "histogram", () => {
    const out: MetricValue[] = [];
    source.forEachTelemetry((fn, t) => {
      let cumulative = 0;
      LATENCY_BUCKETS.forEach((le, i) => {
        cumulative += t.buckets[i] as number;
        out.push({ labels: { function: fn, le }, value: cumulative, metricName: `${name}_bucket` });
      });
      out.push({ labels: { function: fn, le: "+Inf" }, value: t.count, metricName: `${name}_bucket` });
      out.push({ labels: { function: fn }, value: t.sumSeconds, metricName: `${name}_sum` });
      out.push({ labels: { function: fn }, value: t.count, metricName: `${name}_count` });
    });
    return out;
  });
}
