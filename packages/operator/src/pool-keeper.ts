/**
 * Keeps the warm pool (ADR 0008) while this operator leads: in every namespace
 * it serves, the pool token Secret and one `faas-pool-<runtime>` Deployment per
 * runtime at the configured size; and it retires claimed pods — gateways claim
 * them on cold starts — once they are no longer needed: when the function's own
 * Deployment has had a ready pod for a moment (the hand-off), when they hold
 * old code, when their container restarted (it came back generic), or when the
 * function went back to zero without them.
 */
import {
  CLAIM_FAILED_ANNOTATION,
  CLAIMED_AT_ANNOTATION,
  CLAIMED_FOR_LABEL,
  CODE_HASH_ANNOTATION,
  codeHash,
  deploymentName,
  OPERATOR_FIELD_MANAGER,
  parseFunction,
  poolDeploymentName,
  RUNTIMES,
  toLoadSpec,
} from "@faas/api";
import { type KubeClient, KubeError, objectKey, RESOURCES, type Reflector } from "@faas/kube";
import type { Logger } from "pino";
import type { OperatorConfig } from "./config.js";
import type { DeploymentObject, PodObject, RawFunction } from "./kinds.js";
import type { RegistryAlias } from "./registry-alias.js";
import { buildPoolDeployment, buildPoolTokenSecret } from "./resources/pool.js";

export interface ClaimedPodInput {
  terminating: boolean;
  /** A gateway gave up on this pod mid-claim (its runner may be stuck loading the code). */
  claimFailed: boolean;
  /** The Function's current code hash; undefined when the Function is gone or invalid. */
  functionCodeHash: string | undefined;
  podCodeHash: string | undefined;
  /** The runner container restarted since the claim (it came back generic). */
  restarted: boolean;
  /** Local time since which the function's Deployment has had a ready pod; undefined if it has none. */
  deploymentReadySinceMs: number | undefined;
  deploymentReplicas: number;
  claimedAtMs: number;
}

export interface ClaimedPodTimings {
  /** A ready Deployment pod for this long, and gateways have switched to it: the claimed pod goes. */
  handoffMs: number;
  /** Deployment at zero this long after the claim: the function went idle, or never scaled. */
  orphanMs: number;
}

export type ClaimedPodDecision =
  | { delete: false }
  | {
      delete: true;
      reason: "function-gone" | "claim-failed" | "restarted" | "stale-code" | "handed-off" | "scaled-to-zero";
    };

export function decideClaimedPod(p: ClaimedPodInput, t: ClaimedPodTimings, nowMs: number): ClaimedPodDecision {
  if (p.terminating) return { delete: false };
  if (p.functionCodeHash === undefined) return { delete: true, reason: "function-gone" };
  if (p.claimFailed) return { delete: true, reason: "claim-failed" };
  if (p.restarted) return { delete: true, reason: "restarted" };
  if (p.podCodeHash !== p.functionCodeHash) return { delete: true, reason: "stale-code" };
  if (p.deploymentReadySinceMs !== undefined && nowMs - p.deploymentReadySinceMs >= t.handoffMs) {
    return { delete: true, reason: "handed-off" };
  }
  if (p.deploymentReplicas === 0 && nowMs - p.claimedAtMs >= t.orphanMs)
    return { delete: true, reason: "scaled-to-zero" };
  return { delete: false };
}

export interface PoolKeeperDeps {
  client: KubeClient;
  cfg: OperatorConfig;
  functions: Reflector<RawFunction>;
  deployments: Reflector<DeploymentObject>;
  claimedPods: Reflector<PodObject>;
  log: Logger;
  now: () => number;
  /** The package registry's address for pool pods (ADR 0016); none: no alias. */
  registry?: Pick<RegistryAlias, "hostAliases">;
}

export class PoolKeeper {
  #enabled = false;
  #claimTimer: NodeJS.Timeout | undefined;
  #ensureTimer: NodeJS.Timeout | undefined;
  /** Namespaces whose pool objects were applied in this leadership term. */
  readonly #ensured = new Set<string>();
  readonly #ensuring = new Map<string, Promise<void>>();
  /** Deployment key → local time it was first seen with a ready pod. */
  readonly #readySince = new Map<string, number>();
  readonly #deleting = new Set<string>();

  constructor(private readonly deps: PoolKeeperDeps) {}

  /** Feed every function Deployment add/update/delete, leader or not. */
  observeDeployment(dep: DeploymentObject, deleted = false): void {
    const key = objectKey(dep);
    if (deleted || (dep.status?.readyReplicas ?? 0) === 0) this.#readySince.delete(key);
    else if (!this.#readySince.has(key)) this.#readySince.set(key, this.deps.now());
  }

  /** Runs only while leading. */
  setEnabled(enabled: boolean): void {
    this.#enabled = enabled;
    clearInterval(this.#claimTimer);
    clearInterval(this.#ensureTimer);
    this.#ensured.clear();
    if (!enabled) return;
    this.#claimTimer = setInterval(() => void this.retireClaimedPods(), this.deps.cfg.idleCheckIntervalMs);
    this.#claimTimer.unref();
    this.#ensureTimer = setInterval(() => {
      this.#ensured.clear();
      this.ensureAll();
    }, this.deps.cfg.poolResyncSeconds * 1000);
    this.#ensureTimer.unref();
    this.ensureAll();
  }

  /** The namespaces served: the configured one, or every namespace that has a Function. */
  namespaces(): string[] {
    if (this.deps.cfg.namespace !== undefined) return [this.deps.cfg.namespace];
    return [...new Set(this.deps.functions.list().map((f) => f.metadata.namespace ?? "default"))];
  }

  ensureAll(): void {
    for (const ns of this.namespaces()) void this.ensure(ns);
  }

  /** Applies the pool's Secret and Deployments in one namespace (once per term unless resynced). */
  ensure(ns: string): Promise<void> {
    if (!this.#enabled || this.#ensured.has(ns)) return Promise.resolve();
    const running = this.#ensuring.get(ns);
    if (running) return running;
    const p = this.#apply(ns)
      .then(() => {
        this.#ensured.add(ns);
      })
      .catch((err: unknown) => this.deps.log.warn({ namespace: ns, err: (err as Error).message }, "pool: apply failed"))
      .finally(() => this.#ensuring.delete(ns));
    this.#ensuring.set(ns, p);
    return p;
  }

  async #apply(ns: string): Promise<void> {
    const { client, cfg } = this.deps;
    const secretRef = { ...RESOURCES.secrets, namespace: ns };
    try {
      await client.create(secretRef, buildPoolTokenSecret(ns), OPERATOR_FIELD_MANAGER);
      this.deps.log.info({ namespace: ns }, "pool: token secret created");
    } catch (err) {
      if (!(err instanceof KubeError && err.status === 409)) throw err;
    }
    const extras = { hostAliases: (await this.deps.registry?.hostAliases()) ?? [] };
    for (const runtime of RUNTIMES) {
      const size = cfg.poolSize[runtime];
      await client.apply(
        { ...RESOURCES.deployments, namespace: ns, name: poolDeploymentName(runtime) },
        buildPoolDeployment(runtime, ns, size, cfg, extras),
        OPERATOR_FIELD_MANAGER,
      );
    }
  }

  /** One pass over the claimed pods; deletes those no longer needed. */
  async retireClaimedPods(): Promise<void> {
    if (!this.#enabled) return;
    const now = this.deps.now();
    const timings = { handoffMs: this.deps.cfg.poolHandoffMs, orphanMs: this.deps.cfg.poolOrphanMs };
    const work: Promise<void>[] = [];
    for (const pod of this.deps.claimedPods.list()) {
      const fnName = pod.metadata.labels?.[CLAIMED_FOR_LABEL];
      const ns = pod.metadata.namespace ?? "default";
      if (!fnName || this.#deleting.has(objectKey(pod))) continue;
      const depKey = `${ns}/${deploymentName(fnName)}`;
      const claimedAt = Date.parse(pod.metadata.annotations?.[CLAIMED_AT_ANNOTATION] ?? "");
      const decision = decideClaimedPod(
        {
          terminating: pod.metadata.deletionTimestamp !== undefined,
          claimFailed: pod.metadata.annotations?.[CLAIM_FAILED_ANNOTATION] !== undefined,
          functionCodeHash: this.#codeHash(`${ns}/${fnName}`),
          podCodeHash: pod.metadata.annotations?.[CODE_HASH_ANNOTATION],
          restarted: (pod.status?.containerStatuses ?? []).some((c) => c.restartCount > 0),
          deploymentReadySinceMs: this.#readySince.get(depKey),
          deploymentReplicas: this.deps.deployments.get(depKey)?.spec?.replicas ?? 0,
          claimedAtMs: Number.isNaN(claimedAt) ? 0 : claimedAt - Date.now() + now,
        },
        timings,
        now,
      );
      if (decision.delete) work.push(this.#delete(pod, fnName, decision.reason));
    }
    await Promise.all(work);
  }

  #codeHash(fnKey: string): string | undefined {
    const raw = this.deps.functions.get(fnKey);
    if (raw === undefined || raw.metadata.deletionTimestamp) return undefined;
    try {
      const fn = parseFunction({
        apiVersion: raw.apiVersion,
        kind: raw.kind,
        metadata: { name: raw.metadata.name },
        spec: raw.spec,
      });
      return codeHash(toLoadSpec(fn));
    } catch {
      return undefined;
    }
  }

  async #delete(pod: PodObject, fn: string, reason: string): Promise<void> {
    const key = objectKey(pod);
    this.#deleting.add(key);
    // A pod that never served (a failed claim, maybe stuck in the code it was loading) or whose
    // runner restarted generic has nothing to drain: no grace period to sit out.
    const serving = reason !== "claim-failed" && reason !== "restarted";
    try {
      // Preconditioned on the uid: never a pod that took the name since.
      await this.deps.client.request(
        "DELETE",
        `/api/v1/namespaces/${encodeURIComponent(pod.metadata.namespace ?? "default")}/pods/${encodeURIComponent(pod.metadata.name)}`,
        {
          body: {
            kind: "DeleteOptions",
            apiVersion: "v1",
            preconditions: { uid: pod.metadata.uid },
            ...(serving ? {} : { gracePeriodSeconds: 0 }),
          },
        },
      );
      this.deps.log.info({ pod: key, fn, reason }, "pool: claimed pod retired");
    } catch (err) {
      if (!(err instanceof KubeError && (err.status === 404 || err.status === 409))) {
        this.deps.log.warn({ pod: key, err: (err as Error).message }, "pool: could not delete a claimed pod");
      }
    } finally {
      this.#deleting.delete(key);
    }
  }
}
