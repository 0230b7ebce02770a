/**
 * Reads Function manifests from YAML text, files and folders. `spec.codeFile`
 * (a path relative to the YAML file) naming a file is inlined into `spec.code`
 * here; naming a directory, it is a package the CLI builds (docs/packages.md):
 * the entry carries the directory, and `spec.package` holds `UNBUILT_DIGEST`
 * until the build replaces it.
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { parseAllDocuments } from "yaml";
import { FaasError } from "./errors.js";
import { type FunctionResource, parseFunction } from "./function-spec.js";
import { FUNCTION_KIND } from "./names.js";

/** Stands for a package not built yet; never deployed (the CLI builds first). */
export const UNBUILT_DIGEST = `sha256:${"0".repeat(64)}`;

export interface ManifestEntry {
  resource: FunctionResource;
  /** Absolute path of the directory `spec.codeFile` named: a package to build. */
  codeDir?: string;
}

export async function loadManifestText(text: string, source: string, baseDir: string): Promise<FunctionResource[]> {
  return resourcesOnly(await loadManifestEntriesText(text, source, baseDir));
}

export async function loadManifestEntriesText(text: string, source: string, baseDir: string): Promise<ManifestEntry[]> {
  const docs = parseAllDocuments(text);
  const out: ManifestEntry[] = [];
  for (const [index, doc] of docs.entries()) {
    if (doc.errors.length > 0) {
      const e = doc.errors[0];
      throw new FaasError("INVALID_SPEC", `${source}: YAML error: ${e?.message ?? "unparseable"}`);
    }
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue;
    if (typeof value !== "object" || Array.isArray(value)) {
      throw new FaasError(
        "INVALID_SPEC",
        `${source} (document ${index + 1}): expected a mapping with apiVersion, kind, metadata, spec`,
      );
    }
    const obj = value as Record<string, unknown>;
    if (obj.kind !== undefined && obj.kind !== FUNCTION_KIND) continue;
    const codeDir = await inlineCodeFile(obj, source, baseDir);
    const resource = parseFunction(obj, docs.length > 1 ? `${source} (document ${index + 1})` : source);
    out.push(codeDir === undefined ? { resource } : { resource, codeDir });
  }
  return out;
}

/** Inlines a code file; for a directory, returns its path and marks the spec as an unbuilt package. */
async function inlineCodeFile(
  obj: Record<string, unknown>,
  source: string,
  baseDir: string,
): Promise<string | undefined> {
  const spec = obj.spec;
  if (typeof spec !== "object" || spec === null) return undefined;
  const s = spec as Record<string, unknown>;
  if (s.codeFile === undefined) return undefined;
  if (typeof s.codeFile !== "string") throw new FaasError("INVALID_SPEC", `${source}: spec.codeFile: must be a path`);
  if (s.code !== undefined || s.package !== undefined)
    throw new FaasError("INVALID_SPEC", `${source}: spec.codeFile: give one of code, codeFile and package`);
  const path = resolve(baseDir, s.codeFile);
  delete s.codeFile;
  let isDir = false;
  try {
    isDir = (await stat(path)).isDirectory();
    if (!isDir) s.code = await readFile(path, "utf8");
  } catch (cause) {
    throw new FaasError("INVALID_SPEC", `${source}: spec.codeFile: cannot read ${path}`, { cause });
  }
  if (!isDir) return undefined;
  s.package = { digest: UNBUILT_DIGEST };
  return path;
}

/** The resources of entries that need no build; a directory is an error naming what builds it. */
function resourcesOnly(entries: readonly ManifestEntry[]): FunctionResource[] {
  return entries.map((e) => {
    if (e.codeDir !== undefined) {
      throw new FaasError(
        "INVALID_SPEC",
        `${e.resource.metadata.name}: spec.codeFile: ${e.codeDir} is a directory (a package): \`faas deploy -f\` builds it`,
      );
    }
    return e.resource;
  });
}

export async function loadManifestFile(path: string): Promise<FunctionResource[]> {
  return resourcesOnly(await loadManifestEntriesFile(path));
}

export async function loadManifestEntriesFile(path: string): Promise<ManifestEntry[]> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (cause) {
    throw new FaasError("NOT_FOUND", `cannot read ${path}`, { cause });
  }
  return loadManifestEntriesText(text, path, dirname(path));
}

/** A file, or every `*.yaml`/`*.yml` in a folder (not recursive), sorted by name. */
export async function loadManifests(path: string): Promise<FunctionResource[]> {
  return resourcesOnly(await loadManifestEntries(path));
}

/** Like `loadManifests`, with the directories of packaged functions. */
export async function loadManifestEntries(path: string): Promise<ManifestEntry[]> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(path);
  } catch (cause) {
    throw new FaasError("NOT_FOUND", `no such file or folder: ${path}`, { cause });
  }
  if (!info.isDirectory()) return loadManifestEntriesFile(path);
  const names = (await readdir(path)).filter((n) => /\.ya?ml$/.test(n)).sort();
  const all: ManifestEntry[] = [];
  for (const n of names) all.push(...(await loadManifestEntriesFile(join(path, n))));
  return all;
}
