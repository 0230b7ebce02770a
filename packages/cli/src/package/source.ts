/**
 * A function's directory as a package source: its files (sorted, so builds are
 * reproducible) and its dependency manifest, checked before anything is built.
 * See docs/packages.md.
 */
import { lstat, readdir, readFile } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import { type Runtime, SOURCE_EXT } from "./runtime.js";

/** Code and data files of one function, dependencies not counted. */
export const MAX_SOURCE_BYTES = 64 * 1024 * 1024;
export const MAX_SOURCE_FILES = 10_000;
/** Never part of the code layer: build output, caches, VCS data, and the names the package root reserves. */
const SKIPPED_DIRS = new Set([".git", ".hg", ".svn", "__pycache__", ".venv", "venv", ".mypy_cache", ".pytest_cache"]);
const RESERVED_AT_ROOT = new Set(["node_modules", "site-packages"]);
const SKIPPED_FILES = /\.(pyc|pyo)$|^\.DS_Store$/;

export interface Dependencies {
  kind: "pip" | "npm";
  /** The files that decide the build, by name: requirements.txt, or package.json and package-lock.json. */
  files: Record<string, string>;
}

export interface PackageSource {
  dir: string;
  runtime: Runtime;
  /** Relative paths with `/`, sorted by code point. */
  files: string[];
  bytes: number;
  dependencies?: Dependencies;
}

export class SourceError extends Error {
  override name = "SourceError";
}

export async function readSource(dir: string, runtime: Runtime, handler: string): Promise<PackageSource> {
  const files: string[] = [];
  let bytes = 0;
  const walk = async (at: string): Promise<void> => {
    const entries = await readdir(at, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const path = join(at, e.name);
      const rel = relative(dir, path).split(sep).join("/");
      if (e.isDirectory()) {
        if (SKIPPED_DIRS.has(e.name) || (at === dir && RESERVED_AT_ROOT.has(e.name))) continue;
        await walk(path);
      } else if (e.isFile()) {
        if (SKIPPED_FILES.test(e.name)) continue;
        bytes += (await lstat(path)).size;
        files.push(rel);
      } else if (e.isSymbolicLink()) {
        throw new SourceError(`${rel}: symbolic links are not packaged; copy the file into the directory`);
      }
      if (files.length > MAX_SOURCE_FILES)
        throw new SourceError(`more than ${MAX_SOURCE_FILES} files (dependencies are installed, not copied)`);
      if (bytes > MAX_SOURCE_BYTES)
        throw new SourceError(`more than ${MAX_SOURCE_BYTES / 1024 / 1024} MiB of code and data files`);
    }
  };
  try {
    await walk(dir);
  } catch (err) {
    if (err instanceof SourceError) throw err;
    throw new SourceError(`cannot read ${dir}: ${(err as Error).message}`);
  }
  files.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const module = handler.slice(0, handler.indexOf("."));
  const main = `${module}${SOURCE_EXT[runtime]}`;
  if (!files.includes(main)) {
    throw new SourceError(
      `no ${main} in ${dir}: the handler ${handler} needs it (set spec.handler or --handler to "<module>.<function>")`,
    );
  }
  const source: PackageSource = { dir, runtime, files, bytes };
  const dependencies = await readDependencies(dir, runtime, files);
  if (dependencies !== undefined) source.dependencies = dependencies;
  return source;
}

async function readDependencies(dir: string, runtime: Runtime, files: string[]): Promise<Dependencies | undefined> {
  const read = (name: string) => readFile(join(dir, name), "utf8");
  if (runtime === "python") {
    if (!files.includes("requirements.txt")) return undefined;
    const text = await read("requirements.txt");
    checkRequirements(text);
    const wanted = text.split("\n").some((l) => l.replace(/#.*/, "").trim() !== "");
    return wanted ? { kind: "pip", files: { "requirements.txt": text } } : undefined;
  }
  if (!files.includes("package.json")) return undefined;
  const pkgText = await read("package.json");
  let pkg: Record<string, unknown>;
  try {
    pkg = JSON.parse(pkgText) as Record<string, unknown>;
  } catch (err) {
    throw new SourceError(`package.json: not valid JSON: ${(err as Error).message}`);
  }
  const deps = { ...(pkg.dependencies as object | undefined), ...(pkg.optionalDependencies as object | undefined) };
  if (Object.keys(deps).length === 0) return undefined;
  if (!files.includes("package-lock.json")) {
    throw new SourceError(
      "package.json has dependencies but there is no package-lock.json: run `npm install` in the directory to create it",
    );
  }
  const out: Dependencies = {
    kind: "npm",
    files: { "package.json": pkgText, "package-lock.json": await read("package-lock.json") },
  };
  // A project .npmrc (a registry, a scope) applies to the build as it would to `npm ci` here.
  if (files.includes(".npmrc")) out.files[".npmrc"] = await read(".npmrc");
  return out;
}

/**
 * The build sees requirements.txt alone (it is the cache key): a line naming
 * another file or a local path would install something the key does not cover.
 */
export function checkRequirements(text: string): void {
  text.split("\n").forEach((raw, i) => {
    const line = raw.replace(/(^|\s)#.*/, "").trim();
    if (line === "") return;
    const refersToFile =
      /^(-r|--requirement|-c|--constraint|-e|--editable)(\s|=|$)/.test(line) ||
      /^(\.{1,2}\/|\/|~|file:)/.test(line) ||
      /@\s*file:/.test(line);
    if (refersToFile) {
      throw new SourceError(
        `requirements.txt line ${i + 1}: "${line}" refers to a file or a local path; ` +
          "a package is built from requirements.txt alone: list the packages themselves (e.g. `pip freeze`)",
      );
    }
  });
}
