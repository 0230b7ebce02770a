/**
 * Reconciles one Function into its ConfigMap, Deployment, Service and HPA and
 * writes its status once. Children are server-side applied under one field
 * manager; the Deployment's replicas are set only when it is created (or raised
 * to minReplicas), so the gateway and the HPA own them afterwards.
 */
import {
  CODE_HASH_ANNOTATION,
  configMapName,
  configMapPrefix,
  deploymentName,
  FUNCTION_KIND,
  FUNCTION_LABEL,
  hpaName,
  OPERATOR_FIELD_MANAGER,
  parseFunction,
  REGISTRY_URL,
  serviceName,
} from "@faas/api";
import { type KubeClient, KubeError, type KubeObject, objectKey, RESOURCES, type Reflector } from "@faas/kube";
import type { Logger } from "pino";
import { functionUrl, type OperatorConfig } from "./config.js";
import { asPermanent, PermanentError, TemporaryError } from "./errors.js";
import type { EventRecorder } from "./events.js";
import type { DeploymentObject, FunctionStatus, PodObject, RawFunction } from "./kinds.js";
import type { RegistryAlias, ServiceAlias } from "./registry-alias.js";
import { buildConfigMap } from "./resources/config-map.js";
import { buildDeployment, buildDeploymentForCreate, functionCodeHash, type PodExtras } from "./resources/deployment.js";
import { buildHpa, wantsHpa } from "./resources/hpa.js";
import { type FunctionObject, functionSelector } from "./resources/labels.js";
import { type ConfigState, configState, type DigestedObject } from "./resources/references.js";
import { buildService } from "./resources/service.js";
import { computeStatus, readyCondition, sameStatus } from "./status.js";
import type { HandlerResult } from "./work-queue.js";

export const CREATE_FIELD_MANAGER = "faas-operator-create";
export const SCALE_FIELD_MANAGER = "faas-operator-scale";

export interface ReconcilerCaches {
  deployments: Reflector<DeploymentObject>;
  configmaps: Reflector<KubeObject>;
  services: Reflector<KubeObject>;
  hpas: Reflector<KubeObject>;
  pods: Reflector<PodObject>;
  /** Every Secret and ConfigMap of the namespaces served, as digests: what functions refer to. */
  secrets: Reflector<DigestedObject>;
  referenced: Reflector<DigestedObject>;
}

export interface ReconcilerDeps {
  client: KubeClient;
  cfg: OperatorConfig;
  caches: ReconcilerCaches;
  events: EventRecorder;
  log: Logger;
  now: () => Date;
  /** The package registry's address for pods of packaged functions (ADR 0016). */
  registry?: Pick<RegistryAlias, "hostAliases">;
  /** The gateways' address, where function pods announce themselves (ADR 0018). */
  gateway?: Pick<ServiceAlias, "hostAliases" | "host">;
}

interface Applied {
  deployment: DeploymentObject;
  fingerprint: string;
}

const ref = (
  r: (typeof RESOURCES)[keyof typeof RESOURCES],
  namespace: string,
  name?: string,
  subresource?: string,
) => ({
  ...r,
  namespace,
  name,
  subresource,
});

/** What identifies the applied state: the Function's generation and the children's specs. */
function fingerprint(
  fn: RawFunction,
  cm: KubeObject | undefined,
  dep: DeploymentObject | undefined,
  svc: KubeObject | undefined,
  hpa: KubeObject | undefined,
  configHash: string | undefined,
): string {
  const { replicas: _r, ...depSpec } = dep?.spec ?? { selector: {}, template: {} };
  return JSON.stringify([
    configHash,
    fn.metadata.uid,
    fn.metadata.generation,
    cm?.metadata.resourceVersion,
    dep ? depSpec : undefined,
    dep?.metadata.labels,
    svc?.metadata.resourceVersion,
    hpa ? hpa.metadata.generation : "none",
  ]);
}

export class FunctionReconciler {
  /** Function key → fingerprint after its last full apply; equal → nothing to apply. */
  readonly #applied = new Map<string, string>();
  /** Function key → `uid/generation` that failed permanently, and why; not retried until it changes. */
  readonly #failed = new Map<string, { stamp: string; reason: string; message: string }>();
  /**
   * Function key → the status this process last wrote (with the Function's uid).
   * The cache may not have caught up with our own write yet; the leader is the
   * only writer, so this is newer.
   */
  readonly #written = new Map<string, { uid: string | undefined; status: FunctionStatus }>();

  constructor(private readonly deps: ReconcilerDeps) {}

  forget(key: string): void {
    this.#applied.delete(key);
    this.#failed.delete(key);
    this.#written.delete(key);
  }

  /** On becoming leader: another process may have written since. */
  resetMemory(): void {
    this.#applied.clear();
    this.#failed.clear();
    this.#written.clear();
  }

  async reconcile(raw: RawFunction, opts: { force: boolean; signal: AbortSignal }): Promise<HandlerResult> {
    if (raw.metadata.deletionTimestamp) return undefined;
    const { caches, log } = this.deps;
    const key = objectKey(raw);
    const ns = raw.metadata.namespace ?? "default";
    const name = raw.metadata.name;
    const stamp = `${raw.metadata.uid}/${raw.metadata.generation}`;
    let deployment = caches.deployments.get(`${ns}/${deploymentName(name)}`);
    let failure = this.#failed.get(key)?.stamp === stamp ? this.#failed.get(key) : undefined;
    let hash: string | undefined;
    if (failure === undefined) {
      try {
        const fn = parseFunction(raw, `${ns}/${name}`) as FunctionObject;
        hash = functionCodeHash(fn);
        const config = this.#configState(fn);
        const cached = fingerprint(
          raw,
          caches.configmaps.get(`${ns}/${configMapName(name, hash)}`),
          deployment,
          caches.services.get(`${ns}/${serviceName(name)}`),
          caches.hpas.get(`${ns}/${hpaName(name)}`),
          config.hash,
        );
        if (opts.force || this.#applied.get(key) !== cached) {
          const changed = this.#applied.get(key) !== cached;
          const applied = await this.#applyChildren(raw, fn, config, opts.signal);
          deployment = applied.deployment;
          this.#applied.set(key, applied.fingerprint);
          log[changed ? "info" : "debug"](
            { fn: key, generation: raw.metadata.generation, codeHash: hash, configHash: config.hash },
            "applied",
          );
          if (changed && config.missing.length > 0) {
            // New pods wait for these (CreateContainerConfigError); running ones keep serving.
            this.deps.events.record(
              raw,
              "Warning",
              "ReferenceMissing",
              `${config.missing.join(", ")} not found; new pods cannot start until it exists`,
            );
          }
        }
        if (deployment) deployment = await this.#ensureMinReplicas(fn, deployment, opts.signal);
        if (deployment) await this.#pruneCode(fn, hash, deployment, opts.signal);
        this.#failed.delete(key);
      } catch (err) {
        const permanent = asPermanent(err);
        if (permanent === undefined) {
          this.#applied.delete(key);
          throw err;
        }
        failure = { stamp, reason: permanent.reason, message: permanent.message };
        this.#failed.set(key, failure);
        this.#applied.delete(key);
        log.warn({ fn: key, reason: permanent.reason, err: permanent.message }, "reconcile failed permanently");
        this.deps.events.record(raw, "Warning", "ReconcileFailed", `${permanent.reason}: ${permanent.message}`);
      }
    }
    const written = this.#written.get(key);
    const prev = written?.uid === raw.metadata.uid ? written?.status : raw.status;
    const status = computeStatus(
      {
        generation: raw.metadata.generation,
        selector: functionSelector(name),
        url: functionUrl(this.deps.cfg, ns, name),
        codeHash: hash,
        deployment,
        pods: caches.pods
          .list()
          .filter((p) => p.metadata.namespace === ns && p.metadata.labels?.[FUNCTION_LABEL] === name),
        failure,
      },
      prev,
      this.deps.now(),
    );
    if (!sameStatus(prev, status)) {
      opts.signal.throwIfAborted();
      await this.deps.client.mergePatch(
        ref(RESOURCES.functions, ns, name, "status"),
        { status },
        OPERATOR_FIELD_MANAGER,
      );
      this.#written.set(key, { uid: raw.metadata.uid, status });
      this.#recordTransitions(raw, prev, status);
      log.debug({ fn: key, ready: readyCondition(status)?.reason }, "status updated");
    }
    return undefined;
  }

  #configState(fn: FunctionObject): ConfigState {
    const { secrets, referenced } = this.deps.caches;
    return configState(fn.spec, fn.metadata.namespace, {
      secret: (ns, name) => secrets.get(`${ns}/${name}`),
      configMap: (ns, name) => referenced.get(`${ns}/${name}`),
    });
  }

  async #applyChildren(
    raw: RawFunction,
    fn: FunctionObject,
    config: ConfigState,
    signal: AbortSignal,
  ): Promise<Applied> {
    const { client, cfg, caches } = this.deps;
    const ns = fn.metadata.namespace;
    const name = fn.metadata.name;
    signal.throwIfAborted();
    // The code first: pods of a new rollout mount what is there when they start.
    const cm = await this.#applyOwned(
      "ConfigMap",
      RESOURCES.configmaps,
      caches.configmaps,
      fn,
      configMapName(name, functionCodeHash(fn)),
      buildConfigMap(fn),
    );
    const extras = await this.#podExtras(fn);
    const created = await this.#createDeploymentOnce(fn, config.hash, signal, extras);
    signal.throwIfAborted();
    const deployment = await client.apply<DeploymentObject>(
      ref(RESOURCES.deployments, ns, deploymentName(name)),
      buildDeployment(fn, cfg, config.hash, extras),
      OPERATOR_FIELD_MANAGER,
    );
    signal.throwIfAborted();
    const svc = await this.#applyOwned(
      "Service",
      RESOURCES.services,
      caches.services,
      fn,
      serviceName(name),
      buildService(fn),
    );
    let hpa: KubeObject | undefined;
    if (wantsHpa(fn.spec)) {
      signal.throwIfAborted();
      hpa = await this.#applyOwned(
        "HorizontalPodAutoscaler",
        RESOURCES.hpas,
        caches.hpas,
        fn,
        hpaName(name),
        buildHpa(fn, cfg),
      );
    } else if (isOwnedBy(caches.hpas.get(`${ns}/${hpaName(name)}`), fn)) {
      signal.throwIfAborted();
      await client.delete(ref(RESOURCES.hpas, ns, hpaName(name)));
      this.deps.events.record(raw, "Normal", "AutoscalerRemoved", `maxReplicas ${fn.spec.maxReplicas}: no HPA needed`);
    }
    if (created) {
      this.deps.events.record(
        raw,
        "Normal",
        "Created",
        `created ConfigMap, Deployment (${fn.spec.minReplicas} replicas) and Service`,
      );
    }
    return { deployment, fingerprint: fingerprint(raw, cm, deployment, svc, hpa, config.hash) };
  }

  /** Server-side applies a child, unless an object of that name belongs to someone else. */
  async #applyOwned(
    kind: string,
    resource: (typeof RESOURCES)[keyof typeof RESOURCES],
    cache: Reflector<KubeObject>,
    fn: FunctionObject,
    name: string,
    body: unknown,
  ): Promise<KubeObject> {
    const r = ref(resource, fn.metadata.namespace, name);
    // Not in the (labelled) cache: new, or someone else's unlabelled object.
    const existing = cache.get(`${fn.metadata.namespace}/${name}`) ?? (await this.deps.client.find<KubeObject>(r));
    if (existing) assertOwned(existing, fn, kind);
    return this.deps.client.apply<KubeObject>(r, body, OPERATOR_FIELD_MANAGER);
  }

  /**
   * POSTs the Deployment with its initial replicas if it does not exist yet,
   * under its own field manager, so later applies never own `spec.replicas`.
   */
  /**
   * A packaged function pulling from the platform's registry gets its address (see
   * registry-alias.ts); every function pod gets the gateways', to announce itself (ADR 0018).
   */
  async #podExtras(fn: FunctionObject): Promise<PodExtras> {
    const { registry, gateway, cfg } = this.deps;
    const pulls = fn.spec.package?.registry === REGISTRY_URL && registry !== undefined;
    const announces = cfg.announcePort > 0 && gateway !== undefined;
    const [registryAliases, gatewayAliases] = await Promise.all([
      pulls ? registry.hostAliases() : [],
      announces ? gateway.hostAliases() : [],
    ]);
    const hostAliases = [...registryAliases, ...gatewayAliases];
    return {
      ...(hostAliases.length > 0 ? { hostAliases } : {}),
      ...(announces ? { announceUrl: `http://${gateway.host}:${cfg.announcePort}/announce` } : {}),
    };
  }

  async #createDeploymentOnce(
    fn: FunctionObject,
    configHash: string | undefined,
    signal: AbortSignal,
    extras: PodExtras,
  ): Promise<boolean> {
    const ns = fn.metadata.namespace;
    const name = deploymentName(fn.metadata.name);
    let existing = this.deps.caches.deployments.get(`${ns}/${name}`);
    if (existing === undefined) {
      signal.throwIfAborted();
      try {
        await this.deps.client.create(
          ref(RESOURCES.deployments, ns),
          buildDeploymentForCreate(fn, this.deps.cfg, configHash, extras),
          CREATE_FIELD_MANAGER,
        );
        return true;
      } catch (err) {
        if (!(err instanceof KubeError && err.status === 409)) throw err;
        existing = await this.deps.client.get<DeploymentObject>(ref(RESOURCES.deployments, ns, name));
      }
    }
    assertOwned(existing, fn, "Deployment");
    return false;
  }

  /**
   * Deletes the code ConfigMaps of older versions once the Deployment runs only
   * the current one: until then an old pod (or its restart) still mounts its own.
   */
  async #pruneCode(fn: FunctionObject, hash: string, dep: DeploymentObject, signal: AbortSignal): Promise<void> {
    const ns = fn.metadata.namespace;
    const current = configMapName(fn.metadata.name, hash);
    const prefix = configMapPrefix(fn.metadata.name);
    const old = this.deps.caches.configmaps
      .list()
      .filter(
        (cm) =>
          cm.metadata.namespace === ns &&
          cm.metadata.name !== current &&
          (cm.metadata.name === prefix || cm.metadata.name.startsWith(`${prefix}-`)) &&
          isOwnedBy(cm, fn),
      );
    if (old.length === 0) return;
    const s = dep.status;
    const rolledOut =
      (s?.observedGeneration ?? 0) >= (dep.metadata.generation ?? 0) &&
      (s?.replicas ?? 0) === (s?.updatedReplicas ?? 0) &&
      dep.spec?.template?.metadata?.annotations?.[CODE_HASH_ANNOTATION] === hash;
    if (!rolledOut) return;
    for (const cm of old) {
      signal.throwIfAborted();
      await this.deps.client.delete(ref(RESOURCES.configmaps, ns, cm.metadata.name));
      this.deps.log.debug({ fn: `${ns}/${fn.metadata.name}`, configMap: cm.metadata.name }, "old code removed");
    }
  }

  async #ensureMinReplicas(fn: FunctionObject, dep: DeploymentObject, signal: AbortSignal): Promise<DeploymentObject> {
    const current = dep.spec?.replicas ?? 0;
    if (current >= fn.spec.minReplicas) return dep;
    signal.throwIfAborted();
    await this.deps.client.mergePatch(
      ref(RESOURCES.deployments, fn.metadata.namespace, dep.metadata.name, "scale"),
      { spec: { replicas: fn.spec.minReplicas } },
      SCALE_FIELD_MANAGER,
    );
    this.deps.log.info(
      { fn: `${fn.metadata.namespace}/${fn.metadata.name}`, from: current, to: fn.spec.minReplicas },
      "raised replicas to minReplicas",
    );
    return { ...dep, spec: { ...dep.spec!, replicas: fn.spec.minReplicas } };
  }

  #recordTransitions(raw: RawFunction, prev: FunctionStatus | undefined, next: FunctionStatus): void {
    const events = this.deps.events;
    if (prev?.codeHash && next.codeHash && prev.codeHash !== next.codeHash) {
      events.record(raw, "Normal", "CodeUpdated", `code changed (${prev.codeHash} → ${next.codeHash}); rolling out`);
    }
    const before = prev?.conditions?.find((c) => c.type === "Progressing");
    const after = next.conditions?.find((c) => c.type === "Progressing");
    if (before?.status === "True" && after?.reason === "RolloutComplete") {
      events.record(raw, "Normal", "RolledOut", `${after.message} (code ${next.codeHash})`);
    }
    const ready = readyCondition(next);
    const wasReady = readyCondition(prev);
    if (ready && ready.status === "False" && ready.reason !== "Progressing" && ready.reason !== wasReady?.reason) {
      if (!["InvalidSpec", "ApplyRejected", "NameConflict"].includes(ready.reason)) {
        events.record(raw, "Warning", ready.reason, ready.message);
      }
    }
  }
}

function isOwnedBy(obj: KubeObject | undefined, fn: FunctionObject): boolean {
  return obj?.metadata.ownerReferences?.some((o) => o.controller && o.uid === fn.metadata.uid) ?? false;
}

/** A child must be this Function's, not a stranger's or a deleted namesake's. */
function assertOwned(obj: KubeObject, fn: FunctionObject, kind: string): void {
  const owner = obj.metadata.ownerReferences?.find((o) => o.controller);
  if (owner?.uid === fn.metadata.uid) return;
  if (owner?.kind === FUNCTION_KIND && owner.name === fn.metadata.name) {
    throw new TemporaryError(
      `${obj.metadata.name} still belongs to a deleted Function ${fn.metadata.name}; waiting for its garbage collection`,
    );
  }
  throw new PermanentError(
    "NameConflict",
    `${kind} ${obj.metadata.name} already exists and is not owned by this Function; delete or rename it`,
  );
}
