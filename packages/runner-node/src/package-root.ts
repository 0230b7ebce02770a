/**
 * Finds a packaged function's root directory (docs/packages.md): the given
 * `dir`, or a pull of the package's OCI manifest and layers from its
 * registry, checked (digests, sizes, limits) and extracted safely into
 * `$TMPDIR/faas-packages/<hex>`.
 */
import { createHash } from "node:crypto";
import { lstat, mkdir, mkdtemp, readdir, readlink, rename, rm, stat } from "node:fs/promises";
import { join, posix } from "node:path";
import { Readable, Transform, type TransformCallback } from "node:stream";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { type ReadEntry, Unpack } from "tar";
import type { LoadPackage } from "./load-spec.js";

export const MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json";
export const CONFIG_MEDIA_TYPE = "application/vnd.faas.package.config.v1+json";
export const LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip";
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
export const DEFAULT_PACKAGE_MAX_BYTES = 1024 * 1024 * 1024;
export const DEFAULT_PACKAGE_PULL_TIMEOUT_MS = 60_000;

export interface PullOptions {
  /** Where pulled packages go: `<cacheDir>/<hex>`. */
  cacheDir: string;
  /** FAAS_PACKAGE_MAX_BYTES: the most a package may unpack to. */
  maxBytes: number;
  /** FAAS_PACKAGE_PULL_TIMEOUT_MS: the deadline of one pull. */
  timeoutMs: number;
}

/** A package that cannot be had; the message starts with the package and where it was looked for. */
export class PackageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PackageError";
  }
}

/** What went wrong, without the package's name (added by `packageRoot`). */
class PullFailure extends Error {}

/** `package sha256:… (registry/repository)` or `package sha256:… (dir)`. */
export function describePackage(pkg: LoadPackage): string {
  const where = pkg.dir ?? `${pkg.registry}/${pkg.repository}`;
  return `package ${pkg.digest} (${where})`;
}

/** Pulls in progress or done in this process, by digest. */
const pulls = new Map<string, Promise<string>>();

/** The package's root directory: `dir` as given, or the pulled and unpacked package. */
export async function packageRoot(pkg: LoadPackage, options: PullOptions): Promise<string> {
  try {
    if (pkg.dir !== undefined) {
      const st = await stat(pkg.dir).catch(() => undefined);
      if (!st?.isDirectory()) throw new PullFailure(`${pkg.dir} is not a directory`);
      return pkg.dir;
    }
    let pulling = pulls.get(pkg.digest);
    if (pulling === undefined) {
      pulling = pull(pkg, options);
      pulls.set(pkg.digest, pulling);
      pulling.catch(() => pulls.delete(pkg.digest));
    }
    return await pulling;
  } catch (err) {
    const reason = err instanceof PullFailure ? err.message : `${(err as Error).name}: ${(err as Error).message}`;
    throw new PackageError(`${describePackage(pkg)}: ${reason}`);
  }
}

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

async function pull(pkg: LoadPackage, options: PullOptions): Promise<string> {
  const hex = pkg.digest.slice("sha256:".length);
  const final = join(options.cacheDir, hex);
  if ((await stat(final).catch(() => undefined))?.isDirectory()) return final;
  await mkdir(options.cacheDir, { recursive: true });
  const tmp = await mkdtemp(join(options.cacheDir, `.pull-${hex.slice(0, 12)}-`));
  const abort = new AbortController();
  const deadline = new PullFailure(`pull did not finish within ${options.timeoutMs} ms`);
  const timer = setTimeout(() => abort.abort(deadline), options.timeoutMs);
  try {
    const base = `${pkg.registry}/v2/${pkg.repository}`;
    const body = await fetchManifest(`${base}/manifests/${pkg.digest}`, abort.signal);
    const actual = `sha256:${createHash("sha256").update(body).digest("hex")}`;
    if (actual !== pkg.digest) throw new PullFailure(`digest mismatch: the registry's manifest has digest ${actual}`);
    const layers = parseManifest(body, options.maxBytes);
    const guard = new EntryGuard(options.maxBytes);
    for (const layer of layers) await fetchLayer(`${base}/blobs/${layer.digest}`, layer, tmp, guard, abort.signal);
    await checkSymlinks(tmp);
    try {
      await rename(tmp, final);
    } catch (err) {
      // Another pull of the same digest got there first: same content.
      if (!(await stat(final).catch(() => undefined))?.isDirectory()) throw err;
      await rm(tmp, { recursive: true, force: true });
    }
    return final;
  } catch (err) {
    await removeSettled(tmp);
    if (abort.signal.aborted) throw deadline;
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Removes a failed pull's directory. The unpacker, once aborted, may still
 * finish writing a file or two it had started: remove until the directory
 * stays gone.
 */
async function removeSettled(dir: string): Promise<void> {
  for (let i = 0; i < 40; i++) {
    await rm(dir, { recursive: true, force: true, maxRetries: 3, retryDelay: 10 }).catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 25));
    if (!(await stat(dir).catch(() => undefined))) return;
  }
}

async function request(url: string, signal: AbortSignal, accept?: string): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(url, { headers: accept ? { accept } : {}, signal, redirect: "follow" });
  } catch (err) {
    if (signal.aborted) throw err;
    const cause = (err as Error).cause as Error | undefined;
    throw new PullFailure(`cannot reach the registry (${url}): ${cause?.message ?? (err as Error).message}`);
  }
  if (!res.ok) {
    let code = "";
    let message = "";
    try {
      const text = (await res.text()).slice(0, 64 * 1024);
      const first = (JSON.parse(text) as { errors?: Array<{ code?: string; message?: string }> }).errors?.[0];
      code = first?.code ? ` ${first.code}` : "";
      message = first?.message ? `: ${first.message}` : "";
    } catch {}
    throw new PullFailure(`HTTP ${res.status}${code} from the registry${message} (GET ${url})`);
  }
  return res;
}

async function fetchManifest(url: string, signal: AbortSignal): Promise<Buffer> {
  const res = await request(url, signal, MANIFEST_MEDIA_TYPE);
  const declared = Number(res.headers.get("content-length") ?? "0");
  if (declared > MAX_MANIFEST_BYTES)
    throw new PullFailure(`manifest too large (${declared} bytes > ${MAX_MANIFEST_BYTES})`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of Readable.fromWeb(res.body as WebReadableStream<Uint8Array>)) {
    size += (chunk as Buffer).length;
    if (size > MAX_MANIFEST_BYTES) throw new PullFailure(`manifest too large (> ${MAX_MANIFEST_BYTES} bytes)`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function parseManifest(body: Buffer, maxBytes: number): Descriptor[] {
  let manifest: { config?: Partial<Descriptor>; layers?: unknown };
  try {
    manifest = JSON.parse(body.toString("utf8")) as typeof manifest;
  } catch (err) {
    throw new PullFailure(`manifest is not JSON: ${(err as Error).message}`);
  }
  if (typeof manifest !== "object" || manifest === null) throw new PullFailure("manifest is not a JSON object");
  if (manifest.config?.mediaType !== CONFIG_MEDIA_TYPE) {
    throw new PullFailure(
      `not a function package: config media type ${JSON.stringify(manifest.config?.mediaType)}, want ${CONFIG_MEDIA_TYPE}`,
    );
  }
  if (!Array.isArray(manifest.layers)) throw new PullFailure("manifest has no layers array");
  return manifest.layers.map((value: unknown, i) => {
    const layer = value as Partial<Descriptor>;
    if (layer?.mediaType !== LAYER_MEDIA_TYPE) {
      throw new PullFailure(`layer ${i}: media type ${JSON.stringify(layer?.mediaType)}, want ${LAYER_MEDIA_TYPE}`);
    }
    if (typeof layer.digest !== "string" || !/^sha256:[a-f0-9]{64}$/.test(layer.digest)) {
      throw new PullFailure(`layer ${i}: bad digest ${JSON.stringify(layer.digest)}`);
    }
    if (typeof layer.size !== "number" || !Number.isSafeInteger(layer.size) || layer.size < 0) {
      throw new PullFailure(`layer ${i}: bad size ${JSON.stringify(layer.size)}`);
    }
    if (layer.size > maxBytes)
      throw new PullFailure(`too large: layer ${i} is ${layer.size} bytes (limit ${maxBytes})`);
    return layer as Descriptor;
  });
}

/** Counts and hashes a blob as it streams past, failing as soon as it is longer than declared. */
class BlobCheck extends Transform {
  readonly hash = createHash("sha256");
  size = 0;
  constructor(private readonly layer: Descriptor) {
    super();
  }
  override _transform(chunk: Buffer, _: BufferEncoding, done: TransformCallback): void {
    if (this.size === 0 && chunk.length > 0 && chunk[0] !== 0x1f) {
      done(new PullFailure(`layer ${this.layer.digest} is not gzip-compressed`));
      return;
    }
    this.size += chunk.length;
    if (this.size > this.layer.size) {
      done(new PullFailure(`layer ${this.layer.digest} is longer than the manifest's size ${this.layer.size}`));
      return;
    }
    this.hash.update(chunk);
    done(null, chunk);
  }
}

async function fetchLayer(
  url: string,
  layer: Descriptor,
  dir: string,
  guard: EntryGuard,
  signal: AbortSignal,
): Promise<void> {
  const res = await request(url, signal);
  const source = Readable.fromWeb(res.body as WebReadableStream<Uint8Array>);
  const check = new BlobCheck(layer);
  await new Promise<void>((resolve, reject) => {
    // The first failure wins; the unpacker is aborted (it then stops writing) and reports it.
    let failure: Error | undefined;
    const fail = (err: Error): void => {
      if (failure !== undefined) return;
      failure = err;
      source.destroy();
      setImmediate(() => unpack.abort(err));
    };
    const unpack = new Unpack({
      cwd: dir,
      strict: true,
      preserveOwner: false,
      filter: (path, entry) => {
        const unsafe = guard.check(path, entry as ReadEntry);
        if (unsafe !== undefined) fail(new PullFailure(unsafe));
        return unsafe === undefined && failure === undefined;
      },
    });
    source.on("error", (err) => fail(signal.aborted ? (signal.reason as Error) : err));
    check.on("error", fail);
    unpack.on("error", (err: Error) => {
      reject(failure ?? new PullFailure(`bad layer ${layer.digest}: ${err.message}`));
    });
    unpack.on("close", () => {
      if (failure === undefined) resolve();
      else reject(failure);
    });
    source.pipe(check).pipe(unpack as unknown as NodeJS.WritableStream);
  });
  if (check.size !== layer.size) {
    throw new PullFailure(`layer ${layer.digest} is ${check.size} bytes, the manifest says ${layer.size}`);
  }
  const actual = `sha256:${check.hash.digest("hex")}`;
  if (actual !== layer.digest) throw new PullFailure(`digest mismatch: layer ${layer.digest} has digest ${actual}`);
}

const FILE_TYPES = new Set(["File", "OldFile", "ContiguousFile"]);
const SAFE_TYPES = new Set([...FILE_TYPES, "Directory", "SymbolicLink", "Link"]);

/** Refuses tar entries that would write outside the root, and counts what the package unpacks to. */
class EntryGuard {
  #total = 0;
  readonly #symlinks = new Set<string>();
  constructor(private readonly maxBytes: number) {}

  /** Why the entry is refused, or undefined. */
  check(path: string, entry: ReadEntry): string | undefined {
    const name = JSON.stringify(path);
    if (!SAFE_TYPES.has(entry.type)) return `unsafe entry ${name}: a ${entry.type} entry`;
    if (path.startsWith("/") || /^[A-Za-z]:/.test(path)) return `unsafe entry ${name}: an absolute path`;
    if (path.split(/[/\\]/).includes("..")) return `unsafe entry ${name}: a ".." component`;
    const normal = posix.normalize(path).replace(/\/+$/, "");
    const parts = normal.split("/");
    for (let i = 1; i < parts.length; i++) {
      const prefix = parts.slice(0, i).join("/");
      if (this.#symlinks.has(prefix)) return `unsafe entry ${name}: it goes through the symbolic link ${prefix}`;
    }
    const target = entry.linkpath ?? "";
    if (entry.type === "SymbolicLink") {
      const resolved = posix.normalize(posix.join(posix.dirname(normal), target));
      if (posix.isAbsolute(target) || resolved === ".." || resolved.startsWith("../")) {
        return `unsafe entry ${name}: a symbolic link to ${JSON.stringify(target)}, outside the package`;
      }
      this.#symlinks.add(normal);
    } else if (entry.type === "Link") {
      if (posix.isAbsolute(target) || target.split("/").includes("..")) {
        return `unsafe entry ${name}: a hard link to ${JSON.stringify(target)}, outside the package`;
      }
    } else if (FILE_TYPES.has(entry.type)) {
      this.#total += entry.size ?? 0;
      if (this.#total > this.maxBytes) return `too large: the package unpacks to more than ${this.maxBytes} bytes`;
    }
    return undefined;
  }
}

/**
 * Each symbolic link, followed through the links it meets on the way, must
 * stay inside the root (a chain of links, each fine on its own, may not).
 */
async function checkSymlinks(root: string): Promise<void> {
  const walk = async (rel: string): Promise<void> => {
    for (const entry of await readdir(join(root, rel), { withFileTypes: true })) {
      const child = rel === "" ? entry.name : `${rel}/${entry.name}`;
      if (entry.isSymbolicLink()) {
        if (await escapes(root, child))
          throw new PullFailure(`unsafe entry "${child}": a symbolic link leading outside the package`);
      } else if (entry.isDirectory()) {
        await walk(child);
      }
    }
  };
  await walk("");
}

async function escapes(root: string, link: string): Promise<boolean> {
  const stack = link.split("/");
  let pending = (await readlink(join(root, link))).split("/");
  stack.pop();
  for (let hops = 0; pending.length > 0; ) {
    const part = pending.shift() as string;
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (stack.length === 0) return true;
      stack.pop();
      continue;
    }
    stack.push(part);
    const st = await lstat(join(root, ...stack)).catch(() => undefined);
    if (st?.isSymbolicLink()) {
      if (++hops > 40) return true;
      const target = await readlink(join(root, ...stack));
      if (posix.isAbsolute(target)) return true;
      stack.pop();
      pending = [...target.split("/"), ...pending];
    }
  }
  return false;
}
