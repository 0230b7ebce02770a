/**
 * Deploying and removing functions in local mode, one at a time per function:
 * new code is trial-loaded (so broken or never-loading code is refused at
 * deploy and the deployed version keeps serving), stored, then rolled out.
 * Serial per name, so after any interleaving of deploys the stored code, the
 * in-memory definition and every routed replica agree. A changed secret or
 * config is a redeploy of each function that refers to it: its version (the
 * resolved content's hash) changes, and replicas are replaced the same way.
 */
import { FaasError, type FunctionResource, type LoadSpec } from "@faas/api";
import type { Logger } from "pino";
import type { FunctionStore } from "./function-store.js";
import { type LocalFunction, newLocalFunction } from "./local-function.js";
import type { Replicas } from "./replicas.js";
import type { Resolver } from "./resolver.js";
import type { ValueKind } from "./value-store.js";

/** What a changed secret or config did to the functions that refer to it. */
export interface RefreshResult {
  /** Functions whose replicas now run with the new values. */
  rolled: string[];
  /** Functions that could not take them (a key they need is gone, or the code failed to load). */
  failed: { function: string; error: string }[];
}

export interface DeploymentHost {
  readonly functions: Map<string, LocalFunction>;
  functionChanged(name: string, resource: FunctionResource | undefined): void;
}

export class Deployments {
  readonly #queues = new Map<string, Promise<void>>();

  constructor(
    private readonly host: DeploymentHost,
    private readonly store: FunctionStore,
    private readonly replicas: Replicas,
    private readonly resolver: Resolver,
    private readonly log: Logger,
  ) {}

  /** Redeploys every function that refers to the secret (or config) `name`, each in its own queue. */
  async refresh(kind: ValueKind, name: string): Promise<RefreshResult> {
    const referring = [...this.host.functions.values()].filter((f) => this.resolver.refersTo(f.resource, kind, name));
    const result: RefreshResult = { rolled: [], failed: [] };
    await Promise.all(
      referring.map(async (f) => {
        const fn = f.resource.metadata.name;
        try {
          await this.#serially(fn, async () => {
            const current = this.host.functions.get(fn);
            if (current !== undefined) await this.#deploy(current.resource);
          });
          result.rolled.push(fn);
        } catch (err) {
          // The message names the field and the secret, never a value.
          this.log.error({ fn, [kind]: name, err: (err as Error).message }, "could not roll out new values");
          result.failed.push({ function: fn, error: (err as Error).message });
        }
      }),
    );
    result.rolled.sort();
    return result;
  }

  /** Validated resource in, `true` when it was new. Resolves once the new code is what gets routed. */
  deploy(resource: FunctionResource): Promise<boolean> {
    return this.#serially(resource.metadata.name, () => this.#deploy(resource));
  }

  /** `false` when there was no such function. */
  remove(name: string): Promise<boolean> {
    return this.#serially(name, () => this.#remove(name));
  }

  /** Runs `work` after every earlier operation on `name` has settled. */
  #serially<T>(name: string, work: () => Promise<T>): Promise<T> {
    const previous = this.#queues.get(name) ?? Promise.resolve();
    const run = previous.then(work);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.#queues.set(name, tail);
    void tail.then(() => {
      if (this.#queues.get(name) === tail) this.#queues.delete(name);
    });
    return run;
  }

  async #deploy(resource: FunctionResource): Promise<boolean> {
    const name = resource.metadata.name;
    const next = newLocalFunction(resource, await this.resolver.resolve(resource));
    const existing = this.host.functions.get(name);
    if (existing === undefined || existing.hash !== next.hash) await this.#trialLoad(next.load, next.hash);
    await this.store.save(resource);
    if (existing === undefined) {
      this.host.functions.set(name, next);
      this.host.functionChanged(name, resource);
      void this.replicas.ensureMin(next);
      return true;
    }
    existing.resource = resource;
    existing.unresolved = undefined;
    this.host.functionChanged(name, resource);
    if (existing.hash !== next.hash) {
      this.replicas.changeCode(existing, next.load, next.hash);
      await this.#rollOut(existing);
    } else {
      void this.replicas.ensureMin(existing);
    }
    return false;
  }

  /** Loads new code in a pooled runner once, so a broken function is refused at deploy. */
  async #trialLoad(load: LoadSpec, hash: string): Promise<void> {
    let runner: Awaited<ReturnType<Replicas["claimAndLoad"]>>["runner"];
    try {
      ({ runner } = await this.replicas.claimAndLoad(load, hash));
    } catch (err) {
      // At deploy time broken code is the caller's mistake: name the field.
      if (err instanceof FaasError && err.code === "FUNCTION_LOAD_FAILED") {
        const field = load.package === undefined ? "spec.code" : "spec.package";
        throw new FaasError("INVALID_SPEC", `${field}: ${err.message}`, {
          cause: err,
          details: { ...err.details, issues: [`${field}: ${err.message}`] },
        });
      }
      throw err;
    }
    void runner.stop(1000);
  }

  /**
   * New code: start as many new replicas as there are old ones, then take the
   * old out of routing (they drain in the background). Resolves once routing
   * holds only replicas of the new code.
   */
  async #rollOut(f: LocalFunction): Promise<void> {
    const old = f.replicas.filter((r) => r.codeHash !== f.hash);
    const spec = f.resource.spec;
    const count = Math.min(Math.max(old.length, spec.minReplicas), spec.maxReplicas);
    const results = await Promise.allSettled(Array.from({ length: count }, () => this.replicas.add(f)));
    const failed = results.find((r) => r.status === "rejected");
    if (failed !== undefined)
      this.log.error({ fn: f.load.name, err: String(failed.reason) }, "roll-out: a new replica failed");
    // Anything not of the current code leaves routing now, including replicas a
    // scale-up attached while the new ones were starting.
    const retired = f.replicas.filter((r) => r.codeHash !== f.hash).map((r) => this.replicas.retire(f, r));
    // Older versions' mounted files go once no runner of theirs is left.
    void Promise.allSettled(retired).then(() =>
      this.resolver.prune(
        f.load.name,
        new Set([f.hash, ...f.replicas.flatMap((r) => (r.codeHash ? [r.codeHash] : []))]),
      ),
    );
  }

  async #remove(name: string): Promise<boolean> {
    const f = this.host.functions.get(name);
    if (f === undefined) return false;
    this.host.functions.delete(name);
    await this.store.remove(name);
    this.host.functionChanged(name, undefined);
    const graceMs = f.resource.spec.timeoutSeconds * 1000 + 5000;
    const replicas = f.replicas;
    f.replicas = [];
    await Promise.all(replicas.map((r) => r.stop(graceMs)));
    await this.resolver.prune(name, new Set());
    return true;
  }
}
