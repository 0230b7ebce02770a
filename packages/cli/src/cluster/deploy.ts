/**
 * `faas deploy` on a cluster: server-side apply of each Function, then wait,
 * with progress on stderr, until its status says it is ready (exit 0) or names
 * a problem (exit 2 with the operator's message, e.g. code that crashes on load).
 */
import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  type FunctionResource,
  type ManifestEntry,
  REGISTRY_PORT,
  REGISTRY_SELECTOR,
  REGISTRY_URL,
  SYSTEM_NAMESPACE,
} from "@faas/api";
import { type KubeClient, PortForwarder, RESOURCES } from "@faas/kube";
import { type ClusterConnection, type ClusterTarget, connectCluster } from "../cluster-context.js";
import type { DeployOptions, DeployResult } from "../commands/deploy.js";
import type { CommandContext } from "../context.js";
import { CliError, EXIT } from "../exit-codes.js";
import { CLI_FIELD_MANAGER, type ClusterFunction, functionObject, readiness } from "./function-object.js";
import { kubeFailure } from "./kube-errors.js";

const POLL_MS = 500;
export const DEFAULT_WAIT_SECONDS = 180;

export async function deployToCluster(
  ctx: CommandContext,
  target: ClusterTarget,
  entries: readonly ManifestEntry[],
  opts: DeployOptions,
): Promise<number> {
  const { ui } = ctx;
  const conn = await connectCluster(target);
  const results: DeployResult[] = [];
  const registry = new RegistryAccess(conn.kube, opts.registry ?? ctx.cfg.registry);
  // Every package is built and pushed before any Function is applied: a build that fails applies nothing.
  const functions: FunctionResource[] = [];
  try {
    for (const entry of entries) {
      functions.push(
        entry.codeDir === undefined ? entry.resource : await buildAndPush(ctx, entry, opts, registry, conn.namespace),
      );
    }
  } finally {
    await registry.close();
  }
  for (const fn of functions) results.push(await deployOne(ctx, target, conn, fn, opts));
  if (opts.json) ui.out(JSON.stringify(results, null, 2));
  return EXIT.OK;
}

/**
 * The registry the CLI pushes to: `--registry`/`FAAS_REGISTRY` when given (it
 * must be reachable from here and from the pods at the same URL), else the
 * platform's own through a port-forward to its pod; pods pull that one at
 * `REGISTRY_URL`.
 */
class RegistryAccess {
  #forwarder: PortForwarder | undefined;
  #pushUrl: string | undefined;

  constructor(
    private readonly kube: KubeClient,
    private readonly userRegistry: string | undefined,
  ) {}

  /** Where pods pull from. */
  get pullUrl(): string {
    return this.userRegistry ?? REGISTRY_URL;
  }

  async pushUrl(): Promise<string> {
    if (this.userRegistry !== undefined) return this.userRegistry;
    if (this.#pushUrl !== undefined) return this.#pushUrl;
    this.#forwarder = new PortForwarder(this.kube, {
      namespace: SYSTEM_NAMESPACE,
      selector: REGISTRY_SELECTOR,
      port: REGISTRY_PORT,
    });
    try {
      this.#pushUrl = `http://127.0.0.1:${await this.#forwarder.start()}`;
    } catch (err) {
      throw new CliError(
        EXIT.UNAVAILABLE,
        `cannot reach the package registry in ${SYSTEM_NAMESPACE}: ${(err as Error).message}`,
        "install it with `kubectl apply -f deploy/registry.yaml`, or name your own with --registry URL",
        { cause: err },
      );
    }
    return this.#pushUrl;
  }

  async close(): Promise<void> {
    await this.#forwarder?.close();
  }
}

async function buildAndPush(
  ctx: CommandContext,
  entry: ManifestEntry,
  opts: DeployOptions,
  registry: RegistryAccess,
  namespace: string,
): Promise<FunctionResource> {
  const { buildForDeploy } = await import("../package/deploy-build.js");
  const { pushArtifact, PushError } = await import("../package/push.js");
  const repository = `${namespace}/${entry.resource.metadata.name}`;
  const target = {
    kind: "cluster",
    python: ctx.cfg.python,
    npm: ctx.cfg.npm,
    ...(ctx.cfg.clusterArch === undefined ? {} : { arch: ctx.cfg.clusterArch }),
  } as const;
  return buildForDeploy(ctx, entry, { quiet: opts.json === true, target }, async (pkg, progress) => {
    const url = await registry.pushUrl();
    progress(`pushing to ${registry.pullUrl}/${repository}`);
    const pushed = pkg.deps === undefined ? undefined : await readPushed(pkg.deps.dir);
    const depsLayer = pkg.deps === undefined ? undefined : pkg.artifact.layers[1]?.digest;
    try {
      await pushArtifact(url, repository, pkg.artifact, {
        progress,
        // The dependency layer is the same blob for every function with these dependencies.
        mountFrom: (digest) => (digest === depsLayer ? pushed?.[registry.pullUrl] : undefined),
      });
      if (pkg.deps !== undefined) await writePushed(pkg.deps.dir, { ...pushed, [registry.pullUrl]: repository });
    } catch (err) {
      if (err instanceof PushError)
        throw new CliError(EXIT.FAILED, `deploy ${entry.resource.metadata.name}: ${err.message}`);
      throw err;
    }
    return { digest: pkg.artifact.digest, registry: registry.pullUrl, repository };
  });
}

async function deployOne(
  ctx: CommandContext,
  target: ClusterTarget,
  conn: ClusterConnection,
  fn: FunctionResource,
  opts: DeployOptions,
): Promise<DeployResult> {
  const { ui } = ctx;
  const name = fn.metadata.name;
  const ref = { ...RESOURCES.functions, namespace: conn.namespace, name };
  let applied: ClusterFunction;
  let created: boolean;
  try {
    created = (await conn.kube.find<ClusterFunction>(ref)) === undefined;
    applied = await conn.kube.apply<ClusterFunction>(ref, functionObject(fn, conn.namespace), CLI_FIELD_MANAGER);
  } catch (err) {
    throw kubeFailure(err, `deploy ${name}`, conn.where);
  }
  const spinner = ui.spinner(`deploying ${name} (${conn.where})…`, { quiet: opts.json });
  let last = "";
  const progress = (message: string): void => {
    if (message === last) return;
    last = message;
    spinner.update(`deploying ${name}: ${message}`);
    if (!ui.canAnimate && !opts.json) ui.note(ui.ce.dim(`${name}: ${message}`));
  };
  const deadline = Date.now() + (opts.wait ?? DEFAULT_WAIT_SECONDS) * 1000;
  let current = applied;
  try {
    for (;;) {
      const r = readiness(current);
      if (r.state === "ready") break;
      if (r.state === "failed") {
        throw new CliError(
          EXIT.USAGE,
          `deploy ${name}: ${r.reason}: ${r.message}`,
          `\`faas logs ${name}${target.context ? ` --context ${target.context}` : ""}\` shows what the runner printed`,
        );
      }
      progress(r.message);
      if (Date.now() > deadline) {
        throw new CliError(
          EXIT.FAILED,
          `deploy ${name}: not ready after ${opts.wait ?? DEFAULT_WAIT_SECONDS} s: ${r.message}`,
          "is the operator running? (faas operator, or deploy/operator.yaml)",
        );
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      try {
        current = await conn.kube.get<ClusterFunction>(ref);
      } catch (err) {
        throw kubeFailure(err, `deploy ${name}`, conn.where);
      }
    }
  } finally {
    spinner.stop();
  }
  const result = { name, created, url: current.status?.url ?? "" };
  if (!opts.json) ui.out(`${ui.c.green(created ? "created" : "updated")} ${ui.c.bold(name)}  ${result.url}`);
  return result;
}

/** Where a dependency build's layer was last pushed, per registry (`pushed.json` beside the build). */
async function readPushed(buildDir: string): Promise<Record<string, string>> {
  try {
    const parsed = JSON.parse(await readFile(join(buildDir, "pushed.json"), "utf8")) as unknown;
    return typeof parsed === "object" && parsed !== null ? (parsed as Record<string, string>) : {};
  } catch {
    return {};
  }
}

async function writePushed(buildDir: string, pushed: Record<string, string>): Promise<void> {
  const tmp = join(buildDir, `pushed.json.${process.pid}`);
  await writeFile(tmp, JSON.stringify(pushed), { mode: 0o600 });
  await rename(tmp, join(buildDir, "pushed.json"));
}
