/**
 * Reads Function manifests from YAML text, files and folders. `spec.codeFile`
 * (a path relative to the YAML file) is inlined into `spec.code` here, so every
 * other component sees code only inline.
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { parseAllDocuments } from "yaml";
import { FaasError } from "./errors.js";
import { type FunctionResource, parseFunction } from "./function-spec.js";
import { FUNCTION_KIND } from "./names.js";

export async function loadManifestText(text: string, source: string, baseDir: string): Promise<FunctionResource[]> {
  const docs = parseAllDocuments(text);
  const out: FunctionResource[] = [];
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
    await inlineCodeFile(obj, source, baseDir);
    out.push(parseFunction(obj, docs.length > 1 ? `${source} (document ${index + 1})` : source));
  }
  return out;
}

async function inlineCodeFile(obj: Record<string, unknown>, source: string, baseDir: string): Promise<void> {
  const spec = obj.spec;
  if (typeof spec !== "object" || spec === null) return;
  const s = spec as Record<string, unknown>;
  if (s.codeFile === undefined) return;
  if (typeof s.codeFile !== "string") throw new FaasError("INVALID_SPEC", `${source}: spec.codeFile: must be a path`);
  if (s.code !== undefined)
    throw new FaasError("INVALID_SPEC", `${source}: spec.code and spec.codeFile: give one, not both`);
  const path = resolve(baseDir, s.codeFile);
  try {
    s.code = await readFile(path, "utf8");
  } catch (cause) {
    throw new FaasError("INVALID_SPEC", `${source}: spec.codeFile: cannot read ${path}`, { cause });
  }
  delete s.codeFile;
}

export async function loadManifestFile(path: string): Promise<FunctionResource[]> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (cause) {
    throw new FaasError("NOT_FOUND", `cannot read ${path}`, { cause });
  }
  return loadManifestText(text, path, dirname(path));
}

/** A file, or every `*.yaml`/`*.yml` in a folder (not recursive), sorted by name. */
export async function loadManifests(path: string): Promise<FunctionResource[]> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(path);
  } catch (cause) {
    throw new FaasError("NOT_FOUND", `no such file or folder: ${path}`, { cause });
  }
  if (!info.isDirectory()) return loadManifestFile(path);
  const names = (await readdir(path)).filter((n) => /\.ya?ml$/.test(n)).sort();
  const all: FunctionResource[] = [];
  for (const n of names) all.push(...(await loadManifestFile(join(path, n))));
  return all;
}
