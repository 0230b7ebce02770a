/**
 * Dependency builds, content-addressed: the key hashes the lockfile (or
 * requirements) with the runtime and platform they are built for, so an
 * unchanged lockfile never installs again and functions with the same
 * dependencies share one build. Builds go to `<builds>/<key>` through a
 * temporary directory and a rename: a build is there whole or not at all.
 */
import { spawn } from "node:child_process";
import { createHash, randomUUID } from "node:crypto";
import { mkdir, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  type BuildTarget,
  CLUSTER_PYTHON,
  clusterArch,
  clusterPipOptions,
  DEPS_DIR,
  npmCpu,
  pythonInfo,
} from "./runtime.js";
import type { Dependencies, PackageSource } from "./source.js";

/** Bumped when the layout of a build changes, so old builds are not reused. */
const BUILD_FORMAT = 1;
const TAIL_LINES = 25;

export interface DependencyBuild {
  key: string;
  /** `<builds>/<key>`: holds `site-packages/` or `node_modules/`. */
  dir: string;
  /** False when the build was already there. */
  built: boolean;
  ms: number;
}

export class BuildError extends Error {
  override name = "BuildError";
  constructor(
    message: string,
    /** The last lines pip or npm printed. */
    readonly tail: string[],
  ) {
    super(message);
  }
}

export async function dependencyKey(source: PackageSource, deps: Dependencies, target: BuildTarget): Promise<string> {
  const h = createHash("sha256");
  h.update(JSON.stringify({ format: BUILD_FORMAT, kind: deps.kind, target: await targetId(source, target) }));
  if (deps.kind === "pip") h.update(deps.files["requirements.txt"] ?? "");
  else {
    // The lockfile decides what is installed; package.json's dependency fields decide
    // whether `npm ci` accepts it (a lockfile out of step with them is a new key), and
    // its scripts and an .npmrc change what `npm ci` does.
    const pkg = JSON.parse(deps.files["package.json"] ?? "{}") as Record<string, unknown>;
    const fields = ["dependencies", "optionalDependencies", "peerDependencies", "overrides", "bundleDependencies"];
    h.update(JSON.stringify([...fields, "scripts"].map((f) => pkg[f] ?? null)));
    h.update(deps.files["package-lock.json"] ?? "");
    h.update(JSON.stringify(deps.files[".npmrc"] ?? null));
  }
  return `${source.runtime}-${h.digest("hex").slice(0, 32)}`;
}

async function targetId(source: PackageSource, target: BuildTarget): Promise<string> {
  const node = `node${process.versions.node.split(".")[0]}`;
  if (target.kind === "cluster") {
    if (source.runtime === "nodejs") return `${node}-linux-${npmCpu(target.arch)}`;
    return `${CLUSTER_PYTHON.abi}-manylinux_2_${CLUSTER_PYTHON.glibc[1]}-${clusterArch(target.arch)}`;
  }
  if (source.runtime === "nodejs") return `${node}-${process.platform}-${process.arch}`;
  const info = await pythonInfo(target.python);
  return `${info.tag}-${info.platform}`;
}

export interface BuildOptions {
  buildsDir: string;
  target: BuildTarget;
  /** Each line pip or npm prints, for progress. */
  onLine?: (line: string) => void;
  /** Called when the tool is about to run (not when the build is reused). */
  onBuild?: () => void;
}

export async function buildDependencies(
  source: PackageSource,
  deps: Dependencies,
  opts: BuildOptions,
): Promise<DependencyBuild> {
  const started = performance.now();
  const key = await dependencyKey(source, deps, opts.target);
  const dir = join(opts.buildsDir, key);
  const complete = (): Promise<boolean> => isDir(join(dir, DEPS_DIR[source.runtime]));
  if (await complete()) return { key, dir, built: false, ms: 0 };
  await mkdir(opts.buildsDir, { recursive: true, mode: 0o700 });
  opts.onBuild?.();
  const tmp = `${dir}.tmp-${randomUUID()}`;
  await mkdir(tmp, { recursive: true, mode: 0o700 });
  try {
    for (const [name, text] of Object.entries(deps.files)) await writeFile(join(tmp, name), text, { mode: 0o600 });
    if (deps.kind === "pip") await pipInstall(tmp, opts);
    else await npmCi(tmp, opts);
    // Nothing to install (options only) is still a build: an empty directory.
    await mkdir(join(tmp, DEPS_DIR[source.runtime]), { recursive: true });
    await settle(tmp, dir, complete);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
  return { key, dir, built: true, ms: performance.now() - started };
}

/**
 * Moves a finished build into place. A build of the same key that finished
 * first (another deploy at the same time) wins and is never removed: functions
 * may already link to it. Only a leftover without its dependency directory is
 * cleared away.
 */
async function settle(tmp: string, dir: string, complete: () => Promise<boolean>): Promise<void> {
  try {
    await rename(tmp, dir);
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "ENOTEMPTY" && code !== "EEXIST") throw err;
  }
  if (await complete()) {
    await rm(tmp, { recursive: true, force: true });
    return;
  }
  const stale = `${dir}.stale-${randomUUID()}`;
  await rename(dir, stale);
  await rename(tmp, dir);
  await rm(stale, { recursive: true, force: true });
}

async function pipInstall(tmp: string, opts: BuildOptions): Promise<void> {
  const target = join(tmp, "site-packages");
  const cluster = opts.target.kind === "cluster";
  const args = [
    "-m",
    "pip",
    "install",
    "--disable-pip-version-check",
    "--no-input",
    "--progress-bar",
    "off",
    "--no-compile",
    "--target",
    target,
    ...(cluster ? clusterPipOptions(opts.target.arch) : []),
    "-r",
    join(tmp, "requirements.txt"),
  ];
  await run(opts.target.python, args, tmp, "pip install", opts.onLine);
  // Console scripts and pip's own records are of no use to a runner.
  await rm(join(target, "bin"), { recursive: true, force: true });
  // Bytecode keyed by source hash, not mtime: valid after extraction (mtimes are 0 in the
  // layer) and the same bytes every build. Only when the builder's Python is the runner's.
  const info = await pythonInfo(opts.target.python);
  if (!cluster || info.version === CLUSTER_PYTHON.version) {
    const compile = ["-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash", target];
    await run(opts.target.python, compile, tmp, "compileall", opts.onLine);
  }
}

async function npmCi(tmp: string, opts: BuildOptions): Promise<void> {
  const args = ["ci", "--omit=dev", "--no-audit", "--no-fund", "--loglevel=notice", "--update-notifier=false"];
  // For a cluster, optional native packages are chosen for the nodes, not for this machine.
  if (opts.target.kind === "cluster") args.push("--os=linux", `--cpu=${npmCpu(opts.target.arch)}`);
  await run(opts.target.npm, args, tmp, "npm ci", opts.onLine);
  await rm(join(tmp, "node_modules", ".bin"), { recursive: true, force: true });
  await rm(join(tmp, "node_modules", ".package-lock.json"), { force: true });
}

/** Runs a build tool; on failure the error carries its last lines. */
function run(
  command: string,
  args: string[],
  cwd: string,
  what: string,
  onLine?: (line: string) => void,
): Promise<void> {
  // Settings of an npm that runs this CLI (npm test, npm run faas) must not leak into the build.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
  const child = spawn(command, args, {
    cwd,
    env: { ...env, PIP_NO_WARN_SCRIPT_LOCATION: "1", PIP_ROOT_USER_ACTION: "ignore" },
    stdio: "pipe",
  });
  const tail: string[] = [];
  const take = (chunk: Buffer, rest: { s: string }) => {
    rest.s += chunk.toString("utf8");
    const lines = rest.s.split(/\r?\n/);
    rest.s = lines.pop() ?? "";
    for (const line of lines) {
      if (line.trim() === "") continue;
      tail.push(line);
      if (tail.length > TAIL_LINES) tail.shift();
      onLine?.(line);
    }
  };
  const out = { s: "" };
  const err = { s: "" };
  child.stdout.on("data", (c: Buffer) => take(c, out));
  child.stderr.on("data", (c: Buffer) => take(c, err));
  return new Promise((resolve, reject) => {
    child.on("error", (e) => reject(new BuildError(`${what}: cannot run ${command}: ${e.message}`, tail)));
    child.on("close", (code, signal) => {
      for (const r of [out, err]) if (r.s.trim() !== "") tail.push(r.s);
      if (code === 0) resolve();
      else
        reject(new BuildError(`${what} failed (${code !== null ? `exit ${code}` : signal})`, tail.slice(-TAIL_LINES)));
    });
  });
}

async function isDir(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isDirectory(),
    () => false,
  );
}

/** Sizes of a directory tree, for progress and limits. */
export async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) total += (await stat(join(e.parentPath, e.name))).size;
  }
  return total;
}
