/**
 * `faas deploy`: Function YAML (-f) or flags in, validated here first so a bad
 * spec never reaches the gateway, then `PUT /admin/functions/<name>` each.
 */
import { readFile, stat } from "node:fs/promises";
import { resolve } from "node:path";
import {
  FaasError,
  FUNCTION_API_VERSION,
  FUNCTION_KIND,
  type FunctionResource,
  loadManifestEntries,
  type ManifestEntry,
  parseFunction,
  UNBUILT_DIGEST,
} from "@faas/api";
import { clusterTarget } from "../cluster-context.js";
import { type CommandContext, gatewayClient } from "../context.js";
import { CliError, EXIT } from "../exit-codes.js";

export interface DeployOptions {
  file: string[];
  name?: string;
  runtime?: string;
  code?: string;
  handler?: string;
  min?: number;
  max?: number;
  concurrency?: number;
  timeout?: number;
  idle?: number;
  env: string[];
  json?: boolean;
  /** On a cluster: the registry to push packages to (default: the platform's own). */
  registry?: string;
  /** On a cluster: how long to wait for the Function to be ready (seconds). */
  wait?: number;
}

export interface DeployResult {
  name: string;
  created: boolean;
  url: string;
}

export async function runDeploy(ctx: CommandContext, opts: DeployOptions): Promise<number> {
  const { ui } = ctx;
  const entries = await readFunctions(opts);
  const cluster = clusterTarget(ctx.cfg);
  if (cluster !== undefined) {
    const { deployToCluster } = await import("../cluster/deploy.js");
    return deployToCluster(ctx, cluster, entries, opts);
  }
  const client = await gatewayClient(ctx.cfg);
  // Every package is built before anything is deployed: a build that fails deploys nothing.
  const functions: FunctionResource[] = [];
  for (const entry of entries) {
    functions.push(entry.codeDir === undefined ? entry.resource : await buildLocal(ctx, entry, opts));
  }
  const results: DeployResult[] = [];
  for (const fn of functions) {
    const name = fn.metadata.name;
    const spinner = ui.spinner(`deploying ${name} (loading its code in a runner)…`, { quiet: opts.json });
    try {
      const res = (await client.admin("PUT", `/functions/${encodeURIComponent(name)}`, fn)) as {
        created: boolean;
        function: { url: string };
      };
      results.push({ name, created: res.created, url: res.function.url });
      spinner.stop();
    } catch (err) {
      spinner.stop();
      if (err instanceof CliError)
        throw new CliError(err.exitCode, `deploy ${name}: ${err.message}`, err.hint, { cause: err });
      throw err;
    }
    const last = results.at(-1);
    if (!opts.json && last !== undefined) {
      ui.out(`${ui.c.green(last.created ? "created" : "updated")} ${ui.c.bold(name)}  ${last.url}`);
    }
  }
  if (opts.json) ui.out(JSON.stringify(results, null, 2));
  return EXIT.OK;
}

/** Builds a directory function into the local store; the spec then names the package by digest. */
async function buildLocal(ctx: CommandContext, entry: ManifestEntry, opts: DeployOptions): Promise<FunctionResource> {
  const { buildForDeploy } = await import("../package/deploy-build.js");
  const { installLocal } = await import("../package/build.js");
  return buildForDeploy(
    ctx,
    entry,
    { quiet: opts.json === true, target: { kind: "local", python: ctx.cfg.python, npm: ctx.cfg.npm } },
    async (pkg) => {
      await installLocal(ctx.cfg.dataDir, pkg);
      return { digest: pkg.artifact.digest };
    },
  );
}

/**
 * The Functions of `-f` files or of the flags, validated; the same locally and
 * on a cluster. An entry with `codeDir` is a package still to build.
 */
export async function readFunctions(opts: DeployOptions): Promise<ManifestEntry[]> {
  const functions = opts.file.length > 0 ? await fromFiles(opts) : [await fromFlags(opts)];
  if (functions.length === 0) throw new CliError(EXIT.USAGE, `no Function found in ${opts.file.join(", ")}`);
  return functions;
}

async function fromFiles(opts: DeployOptions): Promise<ManifestEntry[]> {
  if (opts.name !== undefined || opts.code !== undefined || opts.runtime !== undefined) {
    throw new CliError(EXIT.USAGE, "give either -f FILE or --name/--runtime/--code, not both");
  }
  const all: ManifestEntry[] = [];
  for (const path of opts.file) all.push(...(await loadManifestEntries(path)));
  return all;
}

async function fromFlags(opts: DeployOptions): Promise<ManifestEntry> {
  const missing = (["name", "runtime", "code"] as const).filter((k) => opts[k] === undefined);
  if (missing.length > 0) {
    throw new CliError(
      EXIT.USAGE,
      `missing ${missing.map((k) => `--${k}`).join(", ")}`,
      "deploy a YAML file with -f FILE, or give --name N --runtime python|nodejs --code FILE",
    );
  }
  const codePath = opts.code as string;
  const isDir = await stat(codePath).then(
    (s) => s.isDirectory(),
    () => false,
  );
  let code: string | undefined;
  if (!isDir) {
    try {
      code = await readFile(codePath, "utf8");
    } catch (cause) {
      throw new CliError(EXIT.USAGE, `--code ${opts.code}: cannot read the file`, undefined, { cause });
    }
  }
  const spec: Record<string, unknown> = {
    runtime: opts.runtime,
    ...(isDir ? { package: { digest: UNBUILT_DIGEST } } : { code }),
    env: parseEnv(opts.env),
  };
  const optional = {
    handler: opts.handler,
    minReplicas: opts.min,
    maxReplicas: opts.max,
    concurrency: opts.concurrency,
    timeoutSeconds: opts.timeout,
    idleSeconds: opts.idle,
  };
  for (const [key, value] of Object.entries(optional)) if (value !== undefined) spec[key] = value;
  const resource = { apiVersion: FUNCTION_API_VERSION, kind: FUNCTION_KIND, metadata: { name: opts.name }, spec };
  try {
    const fn = parseFunction(resource, "the command line");
    return isDir ? { resource: fn, codeDir: resolve(codePath) } : { resource: fn };
  } catch (err) {
    if (err instanceof FaasError) throw new CliError(EXIT.USAGE, flagNames(err.message), undefined, { cause: err });
    throw err;
  }
}

/** `spec.minReplicas: …` reads better as `--min (spec.minReplicas): …` when it came from a flag. */
const FLAG_FOR_FIELD: Record<string, string> = {
  "metadata.name": "--name",
  "spec.runtime": "--runtime",
  "spec.code": "--code",
  "spec.handler": "--handler",
  "spec.minReplicas": "--min",
  "spec.maxReplicas": "--max",
  "spec.concurrency": "--concurrency",
  "spec.timeoutSeconds": "--timeout",
  "spec.idleSeconds": "--idle",
  "spec.env": "--env",
};

function flagNames(message: string): string {
  return message.replace(
    /^(\s+)((?:metadata|spec)\.[A-Za-z]+)(\S*):/gm,
    (all, indent: string, field: string, rest: string) => {
      const flag = FLAG_FOR_FIELD[field];
      return flag ? `${indent}${flag} (${field}${rest}):` : all;
    },
  );
}

function parseEnv(pairs: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new CliError(EXIT.USAGE, `--env ${pair}: expected KEY=VALUE`);
    env[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return env;
}
