/**
 * The package as an OCI artifact (docs/packages.md): a code layer, an optional
 * dependency layer, a config blob and the manifest whose digest names the
 * package. Layers are reproducible tar.gz files: sorted names, mtime 0, no
 * owner names, gzip without a timestamp.
 */
import { createHash, randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import { create as createTar } from "tar";
import { DEPS_DIR, type Runtime } from "./runtime.js";

export const MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json";
export const ARTIFACT_TYPE = "application/vnd.faas.package.v1";
export const CONFIG_MEDIA_TYPE = "application/vnd.faas.package.config.v1+json";
export const LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip";

export interface Blob {
  mediaType: string;
  digest: string;
  size: number;
  /** The bytes, in memory (config, manifest, small layers) or in a file. */
  data?: Buffer;
  path?: string;
}

export interface Artifact {
  digest: string;
  manifest: Buffer;
  config: Blob;
  layers: Blob[];
}

export interface PackageConfig {
  runtime: Runtime;
  handler: string;
  dependencies: { key: string; target: string } | null;
}

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

async function fileDigest(path: string): Promise<{ digest: string; size: number }> {
  const h = createHash("sha256");
  let size = 0;
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
    h.update(chunk);
    size += chunk.length;
  }
  return { digest: `sha256:${h.digest("hex")}`, size };
}

/** Never remembers a file: hard-linked files are stored as the plain files they are. */
class NoLinks extends Map<never, string> {
  override set(): this {
    return this;
  }
}

/**
 * A reproducible tar.gz of `files` (relative to `cwd`, in the given order)
 * written to `out`: mode 0755 when the file is executable by anyone, else
 * 0644, whatever the umask; no owners, mtime 0, hard links as plain files.
 */
export async function writeLayer(cwd: string, files: readonly string[], out: string): Promise<Blob> {
  const tmp = `${out}.tmp-${randomUUID()}`;
  await createTar(
    {
      cwd,
      file: tmp,
      gzip: true,
      portable: true,
      mtime: new Date(0),
      noDirRecurse: true,
      linkCache: new NoLinks(),
      onWriteEntry: (entry) => {
        const st = entry.stat as { mode: number } | undefined;
        if (st !== undefined && entry.type === "File")
          st.mode = (st.mode & ~0o7777) | (st.mode & 0o111 ? 0o755 : 0o644);
      },
    },
    [...files],
  );
  await rename(tmp, out);
  return { mediaType: LAYER_MEDIA_TYPE, path: out, ...(await fileDigest(out)) };
}

/** The code layer: the source files at the root. */
export async function codeLayer(dir: string, files: readonly string[], workDir: string): Promise<Blob> {
  await mkdir(workDir, { recursive: true });
  return writeLayer(dir, files, join(workDir, `code-${randomUUID()}.tar.gz`));
}

/**
 * The dependency layer of a build, made once and kept beside it
 * (`layer.tar.gz`, `layer.json`): every package with these dependencies
 * shares the blob.
 */
export async function dependencyLayer(buildDir: string, runtime: Runtime): Promise<Blob> {
  const out = join(buildDir, "layer.tar.gz");
  const meta = join(buildDir, "layer.json");
  const known = await readFile(meta, "utf8").then(
    (t) => JSON.parse(t) as { digest: string; size: number },
    () => undefined,
  );
  if (known !== undefined && (await stat(out).catch(() => undefined))?.size === known.size) {
    return { mediaType: LAYER_MEDIA_TYPE, path: out, ...known };
  }
  const files = await listTree(buildDir, DEPS_DIR[runtime]);
  const blob = await writeLayer(buildDir, files, out);
  await writeFile(meta, JSON.stringify({ digest: blob.digest, size: blob.size }));
  return blob;
}

/** Files and symbolic links under `root/sub`, as sorted paths relative to `root`. */
async function listTree(root: string, sub: string): Promise<string[]> {
  const entries = await readdir(join(root, sub), { withFileTypes: true, recursive: true });
  return entries
    .filter((e) => e.isFile() || e.isSymbolicLink())
    .map((e) => relative(root, join(e.parentPath, e.name)).split(sep).join("/"))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

export function assemble(config: PackageConfig, layers: Blob[]): Artifact {
  const configData = Buffer.from(JSON.stringify(config));
  const configBlob: Blob = {
    mediaType: CONFIG_MEDIA_TYPE,
    digest: sha256(configData),
    size: configData.length,
    data: configData,
  };
  const descriptor = (b: Blob) => ({ mediaType: b.mediaType, digest: b.digest, size: b.size });
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MANIFEST_MEDIA_TYPE,
      artifactType: ARTIFACT_TYPE,
      config: descriptor(configBlob),
      layers: layers.map(descriptor),
    }),
  );
  return { digest: sha256(manifest), manifest, config: configBlob, layers };
}

export async function removeBlobFile(blob: Blob): Promise<void> {
  if (blob.path !== undefined) await rm(blob.path, { force: true });
}
