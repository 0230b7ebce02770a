/**
 * Scale-to-zero for `minReplicas: 0` functions. Activity is the later of the
 * gateways' last-request-at annotation (refreshed while requests are in
 * flight) and the last scale-up of the Deployment this process saw; once that
 * is `idleSeconds` old, the Deployment's scale goes to 0, conditional on the
 * Deployment not having changed since it was read. Runs on a timer, not on
 * watch events, with an injected clock.
 */
import { deploymentName, LAST_REQUEST_ANNOTATION } from "@faas/api";
import { type KubeClient, KubeError, objectKey, RESOURCES, type Reflector } from "@faas/kube";
import type { Logger } from "pino";
import type { EventRecorder } from "./events.js";
import type { DeploymentObject, RawFunction } from "./kinds.js";

export const IDLE_FIELD_MANAGER = "faas-operator-idle";

export interface IdleInput {
  minReplicas: number;
  idleSeconds: number;
  /** The Deployment's spec.replicas. */
  replicas: number;
  lastRequestAt: string | undefined;
  /** Local time of the last scale-up from zero seen (or of the first sight of the Deployment). */
  lastScaleUpMs: number | undefined;
}

export interface IdleDecision {
  scaleToZero: boolean;
  /** How long until it would be idle long enough (0 when it is). */
  remainingMs: number;
}

export function decideIdle(input: IdleInput, nowMs: number): IdleDecision {
  if (input.minReplicas !== 0 || input.replicas <= 0)
    return { scaleToZero: false, remainingMs: Number.POSITIVE_INFINITY };
  const lastRequestMs = input.lastRequestAt ? Date.parse(input.lastRequestAt) : Number.NaN;
  const activity = Math.max(Number.isNaN(lastRequestMs) ? 0 : lastRequestMs, input.lastScaleUpMs ?? 0);
  const remainingMs = Math.max(0, activity + input.idleSeconds * 1000 - nowMs);
  return { scaleToZero: remainingMs === 0, remainingMs };
}

export interface IdleScalerDeps {
  client: KubeClient;
  functions: Reflector<RawFunction>;
  deployments: Reflector<DeploymentObject>;
  events: EventRecorder;
  log: Logger;
  now: () => number;
  intervalMs: number;
  /** Called with the Function key after a scale to zero (its status changes). */
  onScaledToZero: (key: string) => void;
}

export class IdleScaler {
  /** Deployment key → local time its replicas last went up from 0 (or were first seen above 0). */
  readonly #scaleUps = new Map<string, number>();
  readonly #inFlight = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #enabled = false;

  constructor(private readonly deps: IdleScalerDeps) {}

  /** Feed every Deployment add/update here, leader or not, so scale-ups are never missed. */
  observe(dep: DeploymentObject, old: DeploymentObject | undefined): void {
    const now = dep.spec?.replicas ?? 0;
    const before = old === undefined ? 0 : (old.spec?.replicas ?? 0);
    if (now > 0 && before === 0) this.#scaleUps.set(objectKey(dep), this.deps.now());
  }

  forget(dep: DeploymentObject): void {
    this.#scaleUps.delete(objectKey(dep));
  }

  /** Ticks only while enabled (while leading). */
  setEnabled(enabled: boolean): void {
    this.#enabled = enabled;
    clearInterval(this.#timer);
    this.#timer = undefined;
    if (enabled) {
      this.#timer = setInterval(() => void this.tick(), this.deps.intervalMs);
      this.#timer.unref();
    }
  }

  async tick(): Promise<void> {
    if (!this.#enabled) return;
    const work: Promise<void>[] = [];
    for (const fn of this.deps.functions.list()) {
      if (fn.metadata.deletionTimestamp) continue;
      const ns = fn.metadata.namespace ?? "";
      const dep = this.deps.deployments.get(`${ns}/${deploymentName(fn.metadata.name)}`);
      if (dep === undefined || this.#inFlight.has(objectKey(dep))) continue;
      const decision = decideIdle(
        {
          minReplicas: Number(fn.spec?.minReplicas ?? 0),
          idleSeconds: Number(fn.spec?.idleSeconds ?? 60),
          replicas: dep.spec?.replicas ?? 0,
          lastRequestAt: fn.metadata.annotations?.[LAST_REQUEST_ANNOTATION],
          lastScaleUpMs: this.#scaleUps.get(objectKey(dep)),
        },
        this.deps.now(),
      );
      if (decision.scaleToZero) work.push(this.#scaleToZero(fn, dep));
    }
    await Promise.all(work);
  }

  async #scaleToZero(fn: RawFunction, dep: DeploymentObject): Promise<void> {
    const key = objectKey(dep);
    this.#inFlight.add(key);
    const from = dep.spec?.replicas ?? 0;
    try {
      // The resourceVersion makes it conditional: a gateway's scale-up since we read it wins (409).
      await this.deps.client.mergePatch(
        { ...RESOURCES.deployments, namespace: dep.metadata.namespace, name: dep.metadata.name, subresource: "scale" },
        { metadata: { resourceVersion: dep.metadata.resourceVersion }, spec: { replicas: 0 } },
        IDLE_FIELD_MANAGER,
      );
      const idleSeconds = Number(fn.spec?.idleSeconds ?? 60);
      this.deps.log.info({ fn: objectKey(fn), from }, "scaled to zero");
      this.deps.events.record(
        fn,
        "Normal",
        "ScaledToZero",
        `no requests for ${idleSeconds}s: scaled from ${from} to 0 replicas`,
      );
      this.deps.onScaledToZero(objectKey(fn));
    } catch (err) {
      if (!(err instanceof KubeError && (err.status === 409 || err.status === 404))) {
        this.deps.log.warn({ fn: objectKey(fn), err: (err as Error).message }, "scale to zero failed");
      }
    } finally {
      this.#inFlight.delete(key);
    }
  }
}
