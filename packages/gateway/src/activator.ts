/**
 * The activator: routes each invocation to a replica with room, or parks it.
 * A function with no ready replica gets one cold episode — exactly one scale-up
 * however many requests arrive — and parked requests are bounded per function
 * and in total, and never wait past their deadline.
 */
import { FaasError, type FunctionResource } from "@faas/api";
import type { Logger } from "pino";
import type { Backend, BackendListener, ColdStep, Endpoint, LoadView } from "./backend.js";
import type { GatewayConfig } from "./config.js";
import { type ColdEpisode, FunctionState, type Parked, type Slot } from "./function-state.js";
import { type FunctionGaugeSource, FunctionTelemetry, GatewayMetrics } from "./metrics.js";
import { Preconnections } from "./preconnections.js";

type ScaleUpSteps = readonly ColdStep[];

export class Activator implements BackendListener, LoadView, FunctionGaugeSource {
  readonly #states = new Map<string, FunctionState>();
  readonly metrics: GatewayMetrics;
  readonly #preconnections: Preconnections;
  #parkedTotal = 0;
  /** Parked requests by the functions' namespace ("" for the default one). */
  readonly #parkedByNamespace = new Map<string, number>();

  constructor(
    private readonly backend: Backend,
    private readonly cfg: GatewayConfig,
    private readonly log: Logger,
    opts: { defaultMetrics?: boolean } = {},
  ) {
    this.metrics = new GatewayMetrics(this, opts);
    this.#preconnections = new Preconnections(cfg.upstreamKeepAliveMs);
  }

  /** The function's state, or undefined when no such function exists. */
  /** `/invoke/<segment>/…` may name a namespace's function: the backend says whether it serves that namespace. */
  servesNamespace(segment: string): boolean {
    return this.backend.servesNamespace?.(segment) ?? false;
  }

  state(name: string): FunctionState | undefined {
    const known = this.#states.get(name);
    if (known !== undefined) return known;
    const resource = this.backend.getFunction(name);
    if (resource === undefined) return undefined;
    return this.#create(resource);
  }

  #create(resource: FunctionResource): FunctionState {
    const name = resource.metadata.name;
    const state = new FunctionState(resource, new FunctionTelemetry(), (e) => this.#preconnections.take(e));
    this.#states.set(name, state);
    return state;
  }

  /**
   * Parks a request until a replica has room; throws at once when the bounds
   * are reached. Opens a cold episode when the function has no replica, or
   * asks for more replicas when it has some but they are full.
   */
  park(state: FunctionState, budgetMs: number): Parked {
    if (state.queued >= this.cfg.maxParkedPerFunction) {
      this.metrics.parkRejections.inc({ function: state.name, reason: "overflow" });
      throw new FaasError("FUNCTION_BUSY", `function ${state.name} has ${state.queued} requests waiting; retry later`);
    }
    if (this.#parkedTotal >= this.cfg.maxParkedTotal) {
      this.metrics.parkRejections.inc({ function: state.name, reason: "overflow" });
      throw new FaasError("GATEWAY_OVERLOADED", `the gateway has ${this.#parkedTotal} requests waiting; retry later`);
    }
    const ns = state.resource.metadata.namespace ?? "";
    const inNamespace = this.#parkedByNamespace.get(ns) ?? 0;
    if (inNamespace >= this.cfg.maxParkedPerNamespace) {
      this.metrics.parkRejections.inc({ function: state.name, reason: "overflow" });
      throw new FaasError(
        "GATEWAY_OVERLOADED",
        `namespace ${ns || "default"} has ${inNamespace} requests waiting in this gateway; retry later`,
      );
    }
    if (state.ready === 0) this.#startColdEpisode(state);
    else this.#maybeScaleOut(state, 1);
    this.#parkedTotal++;
    this.#parkedByNamespace.set(ns, inNamespace + 1);
    const parked = state.park(budgetMs, () => {
      this.#parkedTotal--;
      const left = (this.#parkedByNamespace.get(ns) ?? 1) - 1;
      if (left > 0) this.#parkedByNamespace.set(ns, left);
      else this.#parkedByNamespace.delete(ns);
    });
    parked.promise.catch((err: unknown) => {
      if (err instanceof FaasError && err.code === "DEADLINE_EXCEEDED")
        this.metrics.parkRejections.inc({ function: state.name, reason: "deadline" });
    });
    return parked;
  }

  /** Opens a cold episode if none is open: exactly one scale-up however many requests arrive. */
  #startColdEpisode(state: FunctionState): void {
    const episode = state.openColdEpisode();
    if (episode === undefined) return;
    const fn = state.name;
    this.metrics.coldStarts.inc({ function: fn });
    this.metrics.scaleUps.inc({ function: fn, reason: "cold" });
    this.log.debug({ fn }, "cold episode");
    // Deferred so the request that opened the episode is parked before a fast backend answers.
    Promise.resolve()
      .then(() => this.backend.scaleUp(fn, 1))
      .then(
        (r) => this.#coldEpisodeDone(state, episode, r.steps),
        (err: unknown) => this.#coldEpisodeFailed(state, episode, err),
      );
  }

  #coldEpisodeDone(state: FunctionState, episode: ColdEpisode, steps: ScaleUpSteps): void {
    state.closeColdEpisode(episode, steps);
    this.metrics.coldStartDuration.observe({ function: state.name }, (performance.now() - episode.startedAt) / 1000);
    // Replicas may have gone again already (crash): keep parked requests moving.
    if (state.ready === 0 && state.queued > 0) this.#startColdEpisode(state);
  }

  #coldEpisodeFailed(state: FunctionState, episode: ColdEpisode, err: unknown): void {
    state.closeColdEpisode(episode, undefined);
    const fn = state.name;
    const e =
      err instanceof FaasError
        ? err
        : new FaasError("SCALE_UP_FAILED", `could not start ${fn}: ${String(err)}`, { cause: err });
    if (this.#states.get(fn) !== state) {
      // The function was deleted (or replaced) meanwhile: its scale-up failing is expected, and nobody waits on it.
      this.log.debug({ fn, err: e.message }, "scale-up of a removed function ended");
      return;
    }
    this.log.warn({ fn, err: e.message }, "scale-up failed");
    if (state.ready === 0) {
      const n = state.rejectAll(e);
      if (n > 0) this.metrics.parkRejections.inc({ function: fn, reason: "scale_up_failed" }, n);
    }
  }

  /** Replicas exist but are full: ask for as many as the load needs, one request at a time. */
  #maybeScaleOut(state: FunctionState, extra: number): void {
    const spec = state.resource.spec;
    const wanted = Math.min(spec.maxReplicas, Math.ceil((state.inFlight + state.queued + extra) / spec.concurrency));
    const desired = this.backend.status(state.name)?.desiredReplicas ?? state.ready;
    if (wanted <= desired || !state.beginScaleOut()) return;
    this.metrics.scaleUps.inc({ function: state.name, reason: "load" });
    this.backend
      .scaleUp(state.name, wanted)
      .catch((err: unknown) => this.log.warn({ fn: state.name, err: String(err) }, "scale-out failed"))
      .finally(() => state.endScaleOut());
  }

  /** A replica refused a connection or said it is draining: stop routing to it. */
  replicaFailed(state: FunctionState, slot: Slot, reason: string): void {
    if (state.retire(slot.id)) this.backend.endpointFailed(state.name, slot.id, reason);
    if (state.ready === 0 && state.queued > 0) this.#startColdEpisode(state);
  }

  // BackendListener
  endpointsChanged(fn: string, endpoints: readonly Endpoint[]): void {
    const state = this.state(fn);
    if (state === undefined) return;
    state.setEndpoints(endpoints);
    if (state.queued === 0) return;
    // Requests still waiting: more replicas (load), or a new cold episode if all went away.
    if (state.ready > 0) this.#maybeScaleOut(state, 0);
    else this.#startColdEpisode(state);
  }

  preconnect(endpoint: Endpoint): void {
    this.#preconnections.open(endpoint);
  }

  endpointLoading(fn: string, endpoint: Endpoint, loaded: Promise<void>, steps?: readonly ColdStep[]): void {
    const state = this.#states.get(fn);
    if (state === undefined) {
      loaded.catch(() => undefined); // nobody waits on it here: the scale-up's own caller reports the error
      return;
    }
    state.addLoading(endpoint, loaded, steps);
  }

  functionChanged(fn: string, resource: FunctionResource | undefined): void {
    const state = this.#states.get(fn);
    if (state === undefined) return;
    if (resource === undefined) {
      state.rejectAll(new FaasError("FUNCTION_NOT_FOUND", `function ${fn} was deleted`));
      state.close();
      this.#states.delete(fn);
      return;
    }
    state.update(resource);
  }

  // LoadView
  inFlight(fn: string): number {
    return this.#states.get(fn)?.inFlight ?? 0;
  }
  queued(fn: string): number {
    return this.#states.get(fn)?.queued ?? 0;
  }
  lastActivityMs(fn: string): number {
    return this.#states.get(fn)?.lastActivityMs ?? 0;
  }
  endpointInFlight(fn: string, endpointId: string): number {
    return this.#states.get(fn)?.endpointInFlight(endpointId) ?? 0;
  }
  routableEndpoints(fn: string): number {
    return this.#states.get(fn)?.ready ?? 0;
  }
  get parkedTotal(): number {
    return this.#parkedTotal;
  }
  get inFlightTotal(): number {
    let n = 0;
    for (const s of this.#states.values()) n += s.inFlight;
    return n;
  }

  // FunctionGaugeSource
  forEachFunction(
    visit: (fn: string, s: { inFlight: number; queued: number; ready: number; desired: number }) => void,
  ): void {
    for (const resource of this.backend.listFunctions()) {
      const name = resource.metadata.name;
      const state = this.#states.get(name);
      const status = this.backend.status(name);
      visit(name, {
        inFlight: state?.inFlight ?? 0,
        queued: state?.queued ?? 0,
        ready: status?.readyReplicas ?? state?.ready ?? 0,
        desired: status?.desiredReplicas ?? 0,
      });
    }
  }

  forEachTelemetry(visit: (fn: string, t: FunctionTelemetry) => void): void {
    for (const [name, state] of this.#states) visit(name, state.telemetry);
  }

  coldStarts(fn: string): number {
    return this.#states.get(fn)?.coldStarts ?? 0;
  }
  p50Ms(fn: string): number | undefined {
    return this.#states.get(fn)?.telemetry.latency.quantile(0.5);
  }

  /** Shutdown: everything still parked is refused, pre-opened connections closed. */
  rejectAllParked(err: FaasError): void {
    for (const s of this.#states.values()) s.rejectAll(err);
    this.#preconnections.close();
  }
}
