/**
 * `faas deploy` of a directory: read the source, build (or reuse) its
 * dependencies, make the artifact; then either unpack it into the local
 * store (`<data>/packages/<hex>`, the dependencies linked, not copied) or
 * push it to a registry. docs/packages.md.
 */
import { randomUUID } from "node:crypto";
import { copyFile, mkdir, mkdtemp, readdir, rename, rm, stat, symlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { type Artifact, assemble, codeLayer, dependencyLayer, removeBlobFile } from "./artifact.js";
import { buildDependencies, type DependencyBuild } from "./deps.js";
import { type BuildTarget, DEPS_DIR, type Runtime } from "./runtime.js";
import { type PackageSource, readSource } from "./source.js";

export interface PackageRequest {
  dir: string;
  runtime: Runtime;
  handler: string;
}

export interface BuiltPackage {
  artifact: Artifact;
  source: PackageSource;
  deps?: DependencyBuild;
  /** Removes the temporary code layer. */
  cleanup(): Promise<void>;
}

export interface PackageBuildOptions {
  dataDir: string;
  target: BuildTarget;
  /** Progress: a phase, and each line of pip's or npm's output. */
  onProgress?: (message: string) => void;
}

export const buildsDir = (dataDir: string): string => join(dataDir, "builds");
export const packagesDir = (dataDir: string): string => join(dataDir, "packages");

export async function buildPackage(req: PackageRequest, opts: PackageBuildOptions): Promise<BuiltPackage> {
  const progress = opts.onProgress ?? (() => {});
  // The data dir holds builds and packages (requirements may carry index credentials): owner only.
  await mkdir(opts.dataDir, { recursive: true, mode: 0o700 });
  const work = join(buildsDir(opts.dataDir), ".work");
  await mkdir(work, { recursive: true, mode: 0o700 });
  await sweep(opts.dataDir);
  const listed = await readSource(req.dir, req.runtime, req.handler);
  // A snapshot of the files, taken before a build that may take minutes: the layer, the
  // digest and the local store all get these bytes, whatever happens to the directory meanwhile.
  const snapshot = await mkdtemp(join(work, "src-"));
  let source: PackageSource;
  let code: Awaited<ReturnType<typeof codeLayer>>;
  try {
    for (const rel of listed.files) {
      const to = join(snapshot, rel);
      await mkdir(dirname(to), { recursive: true });
      await copyFile(join(req.dir, rel), to);
    }
    source = await readSource(snapshot, req.runtime, req.handler);
    code = await codeLayer(snapshot, source.files, work);
  } catch (err) {
    await rm(snapshot, { recursive: true, force: true });
    throw err;
  }
  let deps: DependencyBuild | undefined;
  const layers = [code];
  const cleanup = async (): Promise<void> => {
    await removeBlobFile(code);
    await rm(snapshot, { recursive: true, force: true });
  };
  try {
    if (source.dependencies !== undefined) {
      const tool = source.dependencies.kind === "pip" ? "pip install" : "npm ci";
      deps = await buildDependencies(source, source.dependencies, {
        buildsDir: buildsDir(opts.dataDir),
        target: opts.target,
        onBuild: () =>
          progress(
            `dependencies: ${tool} (${opts.target.kind === "cluster" ? "for the cluster" : "for this machine"})`,
          ),
        onLine: (line) => progress(`${tool}: ${line.trim().slice(0, 100)}`),
      });
      if (!deps.built) progress("dependencies: unchanged, reusing the build");
      layers.push(await dependencyLayer(deps.dir, req.runtime));
    }
  } catch (err) {
    await cleanup();
    throw err;
  }
  const artifact = assemble(
    {
      runtime: req.runtime,
      handler: req.handler,
      dependencies: deps === undefined ? null : { key: deps.key, target: opts.target.kind },
    },
    layers,
  );
  const built: BuiltPackage = { artifact, source, cleanup };
  if (deps !== undefined) built.deps = deps;
  return built;
}

/**
 * Unpacks a package into the local store, once per digest: the source files
 * copied, the dependency build linked. Returns the package root.
 */
export async function installLocal(dataDir: string, pkg: BuiltPackage): Promise<string> {
  const root = join(packagesDir(dataDir), pkg.artifact.digest.replace(/^sha256:/, ""));
  if (await exists(root)) return root;
  await mkdir(packagesDir(dataDir), { recursive: true, mode: 0o700 });
  const tmp = `${root}.tmp-${randomUUID()}`;
  try {
    // The snapshot the digest was made from (source.dir), copied.
    for (const rel of pkg.source.files) {
      const to = join(tmp, rel);
      await mkdir(dirname(to), { recursive: true });
      await copyFile(join(pkg.source.dir, rel), to);
    }
    await mkdir(tmp, { recursive: true });
    if (pkg.deps !== undefined) {
      const name = DEPS_DIR[pkg.source.runtime];
      await symlink(join(pkg.deps.dir, name), join(tmp, name), "dir");
    }
    await rename(tmp, root);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    if (await exists(root)) return root; // another deploy of the same package won the rename
    throw err;
  }
  return root;
}

/** What an interrupted build left (a day old at least): temporary builds, snapshots, layers. */
async function sweep(dataDir: string): Promise<void> {
  const dayAgo = Date.now() - 24 * 3600 * 1000;
  const places = [
    { dir: join(buildsDir(dataDir), ".work"), all: true },
    { dir: buildsDir(dataDir), all: false },
    { dir: packagesDir(dataDir), all: false },
  ];
  for (const { dir, all } of places) {
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (!all && !/\.(tmp|stale)-/.test(name)) continue;
      const path = join(dir, name);
      const st = await stat(path).catch(() => undefined);
      if (st !== undefined && st.mtimeMs < dayAgo) await rm(path, { recursive: true, force: true }).catch(() => {});
    }
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
