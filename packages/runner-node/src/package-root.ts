/**
 * Finds a packaged function's root directory (docs/packages.md): the given
 * `dir`, or a pull of the package's OCI manifest and layers from its
 * registry: each layer blob spooled to a file and checked (size, sha256)
 * before anything of it is unpacked, then extracted safely (entry, size and
 * header limits) into `<cache dir>/<hex>` (`$TMPDIR/faas-packages` by default).
 */
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream, type Stats } from "node:fs";
import { lstat, mkdir, mkdtemp, readdir, readlink, rename, rm, stat } from "node:fs/promises";
import { join, posix } from "node:path";
import { Readable, Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { type ReadEntry, Unpack } from "tar";
import type { LoadPackage } from "./load-spec.js";

export const MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json";
export const CONFIG_MEDIA_TYPE = "application/vnd.faas.package.config.v1+json";
export const LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip";
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
export const DEFAULT_PACKAGE_MAX_BYTES = 1024 * 1024 * 1024;
export const DEFAULT_PACKAGE_PULL_TIMEOUT_MS = 60_000;
export const DEFAULT_PACKAGE_MAX_ENTRIES = 100_000;
/** The largest pax extended header or GNU long name/link header accepted. */
export const MAX_TAR_HEADER_BYTES = 64 * 1024;

export interface PullOptions {
  /** FAAS_PACKAGE_CACHE_DIR: where pulled packages go, `<cacheDir>/<hex>`. */
  cacheDir: string;
  /** FAAS_PACKAGE_MAX_BYTES: the most a package may unpack to. */
  maxBytes: number;
  /** FAAS_PACKAGE_MAX_ENTRIES: the most tar entries a package may have (every type counts). */
  maxEntries?: number;
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
  await checkCacheDir(options.cacheDir);
  const existing = await lstat(final).catch(() => undefined);
  if (existing !== undefined) {
    if (ours(existing) && existing.isDirectory()) return final;
    throw new PullFailure(`${final} exists and is not a directory owned by uid ${uid()}: refusing to use it`);
  }
  // The pull's own directory: the package root being built, and beside it (never inside) the blobs' spool files.
  const tmp = await mkdtemp(join(options.cacheDir, `.pull-${hex.slice(0, 12)}-`));
  const root = join(tmp, "root");
  const abort = new AbortController();
  const deadline = new PullFailure(`pull did not finish within ${options.timeoutMs} ms`);
  const timer = setTimeout(() => abort.abort(deadline), options.timeoutMs);
  try {
    await mkdir(root, { mode: 0o700 });
    const base = `${pkg.registry}/v2/${pkg.repository}`;
    const body = await fetchManifest(`${base}/manifests/${pkg.digest}`, abort.signal);
    const actual = `sha256:${createHash("sha256").update(body).digest("hex")}`;
    if (actual !== pkg.digest) throw new PullFailure(`digest mismatch: the registry's manifest has digest ${actual}`);
    const layers = parseManifest(body, options.maxBytes);
    const guard = new EntryGuard(options.maxBytes, options.maxEntries ?? DEFAULT_PACKAGE_MAX_ENTRIES);
    for (const [i, layer] of layers.entries()) {
      const spool = join(tmp, `layer-${i}.blob`);
      await fetchBlob(`${base}/blobs/${layer.digest}`, layer, spool, abort.signal);
      await extractLayer(spool, layer, root, guard, abort.signal);
      await rm(spool, { force: true });
    }
    await checkSymlinks(root);
    try {
      await rename(root, final);
    } catch (err) {
      // Another pull of the same digest got there first: same content.
      const there = await lstat(final).catch(() => undefined);
      if (!(there?.isDirectory() && ours(there))) throw err;
    }
    await rm(tmp, { recursive: true, force: true });
    return final;
  } catch (err) {
    await removeSettled(tmp);
    if (abort.signal.aborted) throw deadline;
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

function uid(): number {
  return process.getuid?.() ?? -1;
}

function ours(st: Stats): boolean {
  return !st.isSymbolicLink() && st.uid === uid();
}

/**
 * Creates the cache directory (0700) if need be, then refuses it unless it is
 * a real directory (not a symbolic link) owned by this process's uid that
 * neither group nor others may write to: whoever can write there can plant a
 * package under a digest's name.
 */
async function checkCacheDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new PullFailure(`cannot create the package cache directory ${dir}: ${(err as Error).message}`);
  }
  const st = await lstat(dir);
  const refuse = (why: string): never => {
    throw new PullFailure(`the package cache directory ${dir} ${why}: refusing to use it (FAAS_PACKAGE_CACHE_DIR)`);
  };
  if (st.isSymbolicLink()) refuse("is a symbolic link");
  if (!st.isDirectory()) refuse("is not a directory");
  if (st.uid !== uid()) refuse(`is owned by uid ${st.uid}, not ${uid()}`);
  if ((st.mode & 0o022) !== 0) refuse(`is writable by its group or others (mode ${(st.mode & 0o777).toString(8)})`);
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

/**
 * How long a refused connection is tried again: a pod just started can be refused by the registry's
 * NetworkPolicy until the network plugin has learnt its address (about 0.5 s seen with kube-router).
 */
const REFUSED_RETRY_MS = 1500;
const REFUSED_RETRY_EVERY_MS = 100;

async function request(url: string, signal: AbortSignal, accept?: string): Promise<Response> {
  let res: Response;
  const refusedUntil = performance.now() + REFUSED_RETRY_MS;
  for (;;) {
    try {
      res = await fetch(url, { headers: accept ? { accept } : {}, signal, redirect: "follow" });
      break;
    } catch (err) {
      if (signal.aborted) throw err;
      const cause = (err as Error).cause as NodeJS.ErrnoException | undefined;
      if (cause?.code === "ECONNREFUSED" && performance.now() < refusedUntil) {
        await new Promise((resolve) => setTimeout(resolve, REFUSED_RETRY_EVERY_MS));
        continue;
      }
      throw new PullFailure(`cannot reach the registry (${url}): ${cause?.message ?? (err as Error).message}`);
    }
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
  first: number | undefined;
  constructor(private readonly layer: Descriptor) {
    super();
  }
  override _transform(chunk: Buffer, _: BufferEncoding, done: TransformCallback): void {
    if (this.first === undefined && chunk.length > 0) this.first = chunk[0];
    this.size += chunk.length;
    if (this.size > this.layer.size) {
      done(new PullFailure(`layer ${this.layer.digest} is longer than the manifest's size ${this.layer.size}`));
      return;
    }
    this.hash.update(chunk);
    done(null, chunk);
  }
}

/** Streams a layer blob to `spool` (a new file), then checks its size and sha256: nothing of it is unpacked before. */
async function fetchBlob(url: string, layer: Descriptor, spool: string, signal: AbortSignal): Promise<void> {
  const res = await request(url, signal);
  const check = new BlobCheck(layer);
  await pipeline(
    Readable.fromWeb(res.body as WebReadableStream<Uint8Array>),
    check,
    createWriteStream(spool, { flags: "wx", mode: 0o600 }),
    { signal },
  );
  if (check.size !== layer.size) {
    throw new PullFailure(`layer ${layer.digest} is ${check.size} bytes, the manifest says ${layer.size}`);
  }
  const actual = `sha256:${check.hash.digest("hex")}`;
  if (actual !== layer.digest) throw new PullFailure(`digest mismatch: layer ${layer.digest} has digest ${actual}`);
  // The unpacker would take a plain tar (or brotli, zstd) too: the media type says gzip.
  if (check.first !== 0x1f) throw new PullFailure(`layer ${layer.digest} is not gzip-compressed`);
}

/** Gunzips and untars a checked layer blob from its spool file into `dir`. */
async function extractLayer(
  spool: string,
  layer: Descriptor,
  dir: string,
  guard: EntryGuard,
  signal: AbortSignal,
): Promise<void> {
  const source = createReadStream(spool);
  await new Promise<void>((resolve, reject) => {
    // The first failure wins; the unpacker is aborted (it then stops writing) and reports it.
    let failure: Error | undefined;
    const fail = (err: Error): void => {
      if (failure !== undefined) return;
      failure = err;
      source.destroy();
      setImmediate(() => unpack.abort(err));
    };
    const onAbort = (): void => fail(signal.reason as Error);
    const seen = new WeakSet<object>();
    const unpack = new Unpack({
      cwd: dir,
      strict: true,
      preserveOwner: false,
      maxMetaEntrySize: MAX_TAR_HEADER_BYTES,
      filter: (path, entry) => {
        seen.add(entry);
        const unsafe = guard.check(path, entry as ReadEntry);
        if (unsafe !== undefined) fail(new PullFailure(unsafe));
        return unsafe === undefined && failure === undefined;
      },
    });
    // Entries the parser skips without asking the filter: headers past maxMetaEntrySize, unknown types.
    unpack.on("ignoredEntry", (entry: ReadEntry) => {
      if (seen.has(entry)) return;
      if (entry.meta) {
        fail(
          new PullFailure(
            `bad layer ${layer.digest}: a ${entry.type} header of ${entry.size} bytes (limit ${MAX_TAR_HEADER_BYTES})`,
          ),
        );
        return;
      }
      const unsafe = guard.check(entry.path, entry);
      fail(new PullFailure(unsafe ?? `unsafe entry ${JSON.stringify(entry.path)}: a ${entry.type} entry`));
    });
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    source.on("error", fail);
    unpack.on("error", (err: Error) => {
      reject(failure ?? new PullFailure(`bad layer ${layer.digest}: ${err.message}`));
    });
    unpack.on("close", () => {
      signal.removeEventListener("abort", onAbort);
      if (failure === undefined) resolve();
      else reject(failure);
    });
    source.pipe(unpack as unknown as NodeJS.WritableStream);
  });
}

const FILE_TYPES = new Set(["File", "OldFile", "ContiguousFile"]);
const SAFE_TYPES = new Set([...FILE_TYPES, "Directory", "SymbolicLink", "Link"]);

/** Refuses tar entries that would write outside the root, and counts what the package unpacks to. */
class EntryGuard {
  #total = 0;
  #entries = 0;
  readonly #symlinks = new Set<string>();
  constructor(
    private readonly maxBytes: number,
    private readonly maxEntries: number,
  ) {}

  /** Why the entry is refused, or undefined. */
  check(path: string, entry: ReadEntry): string | undefined {
    if (++this.#entries > this.maxEntries) {
      return `too many entries: the package has more than ${this.maxEntries} (FAAS_PACKAGE_MAX_ENTRIES)`;
    }
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
      // A hard link to a symbolic link, or to a path through one, could reach outside the root.
      const targetParts = posix.normalize(target).split("/");
      for (let i = 1; i <= targetParts.length; i++) {
        if (this.#symlinks.has(targetParts.slice(0, i).join("/"))) {
          return `unsafe entry ${name}: a hard link through the symbolic link ${JSON.stringify(target)}`;
        }
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
