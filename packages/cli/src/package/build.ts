/**
 * `faas deploy` of a directory: read the source, build (or reuse) its
 * dependencies, make the artifact; then either unpack it into the local
 * store (`<data>/packages/<hex>`, the dependencies linked, not copied) or
 * push it to a registry. docs/packages.md.
 */
import { copyFile, mkdir, rename, rm, stat, symlink } from "node:fs/promises";
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
  const source = await readSource(req.dir, req.runtime, req.handler);
  let deps: DependencyBuild | undefined;
  const layers = [];
  const code = await codeLayer(source.dir, source.files, join(buildsDir(opts.dataDir), ".work"));
  layers.push(code);
  try {
    if (source.dependencies !== undefined) {
      const tool = source.dependencies.kind === "pip" ? "pip install" : "npm ci";
      progress(`dependencies: ${tool}`);
      deps = await buildDependencies(source, source.dependencies, {
        buildsDir: buildsDir(opts.dataDir),
        target: opts.target,
        onLine: (line) => progress(`${tool}: ${line.trim().slice(0, 100)}`),
      });
      if (!deps.built) progress("dependencies: unchanged, reusing the build");
      layers.push(await dependencyLayer(deps.dir, req.runtime));
    }
  } catch (err) {
    await removeBlobFile(code);
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
  const built: BuiltPackage = { artifact, source, cleanup: () => removeBlobFile(code) };
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
  const tmp = `${root}.tmp-${process.pid}-${Date.now()}`;
  try {
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

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
