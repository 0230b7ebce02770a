/**
 * Turns a function's references to Secrets and ConfigMaps into what its
 * runners get in local mode: environment values in the load spec (sent to the
 * runner over loopback at specialization, never stored) and secret mounts as
 * read-only files under the data directory. The content hash of the result is
 * the function's version: a changed secret changes it, and replicas are
 * replaced the way a redeploy replaces them.
 *
 * A mount's `mountPath` cannot be created on the host; the files of
 * `mountPath: /etc/secrets/db` are at `$FAAS_MOUNT_ROOT/etc/secrets/db`, a
 * directory per function version (unset on Kubernetes, where the path is real).
 */
import { createHash } from "node:crypto";
import { mkdir, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import {
  codeHash,
  FaasError,
  type FunctionResource,
  type LoadSpec,
  references,
  resolveEnv,
  toLoadSpec,
  UNBUILT_DIGEST,
} from "@faas/api";
import type { ValueKind, ValueStore } from "./value-store.js";

export const MOUNT_ROOT_ENV = "FAAS_MOUNT_ROOT";

export interface ResolvedFunction {
  load: LoadSpec;
  /** Version of what the runners get: code, settings, values and files. */
  hash: string;
}

interface Mount {
  mountPath: string;
  files: Record<string, string>;
}

export class Resolver {
  constructor(
    private readonly dataDir: string,
    private readonly stores: Record<ValueKind, ValueStore>,
  ) {}

  /** Throws INVALID_SPEC naming the field when a reference cannot be resolved. */
  async resolve(resource: FunctionResource): Promise<ResolvedFunction> {
    const spec = resource.spec;
    const base = toLoadSpec(resource);
    // The same rules as on Kubernetes; a missing key's message points at `faas secret|config list`.
    const env = resolveEnv(spec, (kind, name, field) => this.#lookup(kind, name, field), {
      noun: (kind) => kind,
      hint: (kind) => `\`faas ${kind} list\` shows its keys`,
    });
    const mounts: Mount[] = (spec.secrets ?? []).map((m, i) => ({
      mountPath: m.mountPath,
      files: { ...this.#lookup("secret", m.name, `spec.secrets.${i}.name`) },
    }));
    const load: LoadSpec = { ...base, env };
    if (base.package !== undefined && base.package.registry === undefined) {
      load.package = { ...base.package, dir: await this.#packageDir(base.package.digest) };
    }
    const hash = createHash("sha256")
      .update(JSON.stringify([codeHash(load), mounts]))
      .digest("hex")
      .slice(0, 16);
    if (mounts.length > 0)
      load.env = { ...env, [MOUNT_ROOT_ENV]: await this.#materialize(resource.metadata.name, hash, mounts) };
    return { load, hash };
  }

  /** Whether the function's spec refers to the secret (or config) `name`. */
  refersTo(resource: FunctionResource, kind: ValueKind, name: string): boolean {
    const refs = references(resource.spec);
    return (kind === "secret" ? refs.secrets : refs.configMaps).includes(name);
  }

  /** Removes the mounted files of a function's versions other than `keep`. */
  async prune(fn: string, keep: ReadonlySet<string>): Promise<void> {
    const dir = this.#functionMounts(fn);
    const versions = await readdir(dir).catch(() => [] as string[]);
    for (const v of versions) if (!keep.has(v)) await rm(join(dir, v), { recursive: true, force: true });
    if (keep.size === 0) await rm(dir, { recursive: true, force: true });
  }

  #lookup(kind: ValueKind, name: string, field: string): Readonly<Record<string, string>> {
    const data = this.stores[kind].get(name);
    if (data === undefined) {
      throw invalid(
        field,
        `no ${kind} named ${JSON.stringify(name)}; create it with \`faas ${kind} set ${name} KEY=VALUE\``,
      );
    }
    return data;
  }

  /** A package in the local store (docs/packages.md), unpacked there by `faas deploy`. */
  async #packageDir(digest: string): Promise<string> {
    if (digest === UNBUILT_DIGEST) {
      throw invalid(
        "spec.package.digest",
        "the package was never built: deploy the function's directory with `faas deploy`",
      );
    }
    const dir = join(this.dataDir, "packages", digest.replace(/^sha256:/, ""));
    if (!(await exists(dir))) {
      throw invalid(
        "spec.package.digest",
        `${digest} is not in the local store (${dir}): deploy the function's directory with \`faas deploy --code DIR\` or \`spec.codeFile: DIR\``,
      );
    }
    return dir;
  }

  #functionMounts(fn: string): string {
    return join(this.dataDir, "mounts", fn);
  }

  /** Writes a version's files once (content-addressed): 0700 directories, 0400 files. */
  async #materialize(fn: string, hash: string, mounts: Mount[]): Promise<string> {
    const root = join(this.#functionMounts(fn), hash);
    if (await exists(root)) return root;
    const tmp = `${root}.${process.pid}.tmp`;
    await rm(tmp, { recursive: true, force: true });
    for (const m of mounts) {
      const dir = join(tmp, m.mountPath);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      for (const [key, value] of Object.entries(m.files)) await writeFile(join(dir, key), value, { mode: 0o400 });
    }
    await mkdir(dirname(root), { recursive: true, mode: 0o700 });
    await rename(tmp, root);
    return root;
  }
}

function invalid(field: string, message: string): FaasError {
  return new FaasError("INVALID_SPEC", `${field}: ${message}`, { details: { issues: [`${field}: ${message}`] } });
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
