/**
 * The load spec (the `POST /specialize` body, or `function.json` in a code
 * directory): validation with messages that name the field, and reading a
 * code directory such as a mounted ConfigMap.
 */
import { readFile } from "node:fs/promises";
import { isAbsolute, join } from "node:path";
import { RunnerError } from "./errors.js";

/**
 * A packaged function (docs/packages.md): `dir` is an unpacked package root
 * (local mode); `registry` + `repository` say where to pull `digest` from.
 */
export interface LoadPackage {
  digest: string;
  dir?: string;
  registry?: string;
  repository?: string;
}

/** Exactly one of `code` and `package` is set. */
export interface LoadSpec {
  name: string;
  handler: string;
  code?: string;
  package?: LoadPackage;
  timeoutSeconds: number;
  env: Record<string, string>;
}

/** `main.handle` → module `main` (loaded from `main.mjs`), export `handle`. */
export interface HandlerRef {
  module: string;
  exportName: string;
}

const HANDLER_PATTERN = /^([A-Za-z_][A-Za-z0-9_-]*)\.([A-Za-z_$][A-Za-z0-9_$]*)$/;
const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;
const DIGEST_PATTERN = /^sha256:[a-f0-9]{64}$/;
const REGISTRY_PATTERN = /^https?:\/\/[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^https?:\/\/\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$/;
/** The OCI distribution spec's repository name grammar. */
const REPOSITORY_PATTERN = /^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$/;
const DEFAULT_TIMEOUT_SECONDS = 30;
const MAX_TIMEOUT_SECONDS = 3600;

function invalid(field: string, message: string): RunnerError {
  return new RunnerError("INVALID_SPEC", `${field}: ${message}`, { field });
}

export function parseHandler(handler: string): HandlerRef {
  const match = HANDLER_PATTERN.exec(handler);
  if (!match)
    throw invalid("handler", `must be "<module>.<export>", e.g. "main.handle"; got ${JSON.stringify(handler)}`);
  return { module: match[1] as string, exportName: match[2] as string };
}

/**
 * Validates a parsed spec. `code` may be omitted only when `codeFrom` can
 * supply it (a code directory holding `<module>.mjs`).
 */
export async function parseLoadSpec(
  value: unknown,
  codeFrom?: (ref: HandlerRef) => Promise<string>,
): Promise<LoadSpec> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new RunnerError("INVALID_SPEC", "load spec must be a JSON object");
  }
  const raw = value as Record<string, unknown>;
  if (typeof raw.name !== "string" || raw.name === "") throw invalid("name", "must be a non-empty string");
  if (raw.runtime !== undefined && raw.runtime !== "nodejs") {
    throw invalid("runtime", `this runner runs "nodejs" functions, not ${JSON.stringify(raw.runtime)}`);
  }
  const handler = raw.handler ?? "main.handle";
  if (typeof handler !== "string") throw invalid("handler", "must be a string");
  const ref = parseHandler(handler);

  const timeoutSeconds = raw.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS;
  if (typeof timeoutSeconds !== "number" || !(timeoutSeconds > 0) || timeoutSeconds > MAX_TIMEOUT_SECONDS) {
    throw invalid("timeoutSeconds", `must be a number in (0, ${MAX_TIMEOUT_SECONDS}]`);
  }

  const env: Record<string, string> = {};
  if (raw.env !== undefined && raw.env !== null) {
    if (typeof raw.env !== "object" || Array.isArray(raw.env)) throw invalid("env", "must be an object of strings");
    for (const [key, v] of Object.entries(raw.env)) {
      if (!ENV_NAME_PATTERN.test(key)) throw invalid(`env.${key}`, "not a valid environment variable name");
      if (typeof v !== "string") throw invalid(`env.${key}`, "must be a string");
      env[key] = v;
    }
  }

  if (raw.package !== undefined && raw.package !== null) {
    if (raw.code !== undefined) throw invalid("package", "give either code or package, not both");
    return { name: raw.name, handler, package: parsePackage(raw.package), timeoutSeconds, env };
  }
  let code = raw.code;
  if (code === undefined && codeFrom) code = await codeFrom(ref);
  if (code === undefined) throw invalid("code", "required (or package)");
  if (typeof code !== "string" || code === "") throw invalid("code", "must be the module's source text");

  return { name: raw.name, handler, code, timeoutSeconds, env };
}

/** `package`: a digest, and a directory or a registry and repository to pull it from. */
export function parsePackage(value: unknown): LoadPackage {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw invalid("package", "must be an object {digest, dir} or {digest, registry, repository}");
  }
  const raw = value as Record<string, unknown>;
  if (typeof raw.digest !== "string" || !DIGEST_PATTERN.test(raw.digest)) {
    throw invalid("package.digest", `must be "sha256:" and 64 lowercase hex digits; got ${JSON.stringify(raw.digest)}`);
  }
  const pkg: LoadPackage = { digest: raw.digest };
  if (raw.dir !== undefined) {
    if (typeof raw.dir !== "string" || !isAbsolute(raw.dir)) {
      throw invalid("package.dir", `must be an absolute path; got ${JSON.stringify(raw.dir)}`);
    }
    pkg.dir = raw.dir;
  }
  if (raw.registry !== undefined) {
    if (typeof raw.registry !== "string" || !REGISTRY_PATTERN.test(raw.registry)) {
      throw invalid("package.registry", `must be "http(s)://host[:port]"; got ${JSON.stringify(raw.registry)}`);
    }
    pkg.registry = raw.registry;
  }
  if (raw.repository !== undefined) {
    if (typeof raw.repository !== "string" || !REPOSITORY_PATTERN.test(raw.repository)) {
      throw invalid(
        "package.repository",
        `must be a repository name such as "default/hello"; got ${JSON.stringify(raw.repository)}`,
      );
    }
    pkg.repository = raw.repository;
  }
  if (pkg.registry !== undefined && pkg.repository === undefined) {
    throw invalid("package.repository", "required with package.registry");
  }
  if (pkg.repository !== undefined && pkg.registry === undefined) {
    throw invalid("package.registry", "required with package.repository");
  }
  if (pkg.dir === undefined && pkg.registry === undefined) {
    throw invalid("package", "needs dir, or registry and repository");
  }
  return pkg;
}

/**
 * Reads `function.json` (and `<module>.mjs` beside it when the spec has
 * neither `code` nor `package`). Undefined when the directory holds no `function.json`. ConfigMap
 * files are symlinks into a `..data` directory; reading follows them.
 */
export async function readCodeDir(dir: string): Promise<LoadSpec | undefined> {
  let text: string;
  try {
    text = await readFile(join(dir, "function.json"), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new RunnerError("INVALID_SPEC", `${join(dir, "function.json")} is not valid JSON: ${(err as Error).message}`);
  }
  return parseLoadSpec(parsed, async (ref) => {
    const file = join(dir, `${ref.module}.mjs`);
    try {
      return await readFile(file, "utf8");
    } catch (err) {
      throw invalid("code", `absent from function.json and ${file} cannot be read (${(err as Error).message})`);
    }
  });
}

/** `function.json` and its code file as given in FAAS_FUNCTION_SPEC and FAAS_FUNCTION_CODE. */
export async function readEnvSpec(specText: string, code: string | undefined): Promise<LoadSpec> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(specText);
  } catch (err) {
    throw new RunnerError("INVALID_SPEC", `FAAS_FUNCTION_SPEC is not valid JSON: ${(err as Error).message}`);
  }
  if (code !== undefined && typeof parsed === "object" && parsed !== null && !("code" in parsed)) {
    parsed = { ...parsed, code };
  }
  return parseLoadSpec(parsed);
}

/** Two specs load the same function: re-specializing with it is a no-op. */
export function sameFunction(a: LoadSpec, b: LoadSpec): boolean {
  return (
    a.name === b.name &&
    a.handler === b.handler &&
    a.code === b.code &&
    JSON.stringify(a.package ?? null) === JSON.stringify(b.package ?? null) &&
    a.timeoutSeconds === b.timeoutSeconds &&
    JSON.stringify(a.env) === JSON.stringify(b.env)
  );
}
