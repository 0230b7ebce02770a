/**
 * A real OCI registry (CNCF Distribution's `registry` binary) on loopback for
 * tests, and a helper that pushes a function package to it (docs/packages.md).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

export const MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json";
export const PACKAGE_ARTIFACT_TYPE = "application/vnd.faas.package.v1";
export const PACKAGE_CONFIG_MEDIA_TYPE = "application/vnd.faas.package.config.v1+json";
export const LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip";

const BUILD_HINT =
  "build it with `bash hack/cluster/build-registry.sh` (Go, about a minute; cached in $FAAS_CACHE/registry), " +
  "or set FAAS_REGISTRY_BIN";

/** The registry binary: FAAS_REGISTRY_BIN, else `$FAAS_CACHE/registry/*\/bin/registry`. */
export function registryBinary(): string | undefined {
  if (process.env.FAAS_REGISTRY_BIN) return process.env.FAAS_REGISTRY_BIN;
  const cache = process.env.FAAS_CACHE || join(homedir(), ".cache", "faas");
  const base = join(cache, "registry");
  const versions = existsSync(base) ? readdirSync(base).sort() : [];
  for (const version of versions) {
    const bin = join(base, version, "bin", "registry");
    if (existsSync(bin)) return bin;
  }
  return undefined;
}

/**
 * Why the registry tests cannot run (undefined: they can). Without the binary
 * they are skipped, saying so, as the API-server tests are; with
 * FAAS_REQUIRE_REGISTRY=1 (CI, which builds it) they fail instead.
 */
export function registrySkipReason(): string | undefined {
  if (registryBinary() !== undefined) return undefined;
  const missing = `the CNCF Distribution registry binary is missing: ${BUILD_HINT}`;
  if (process.env.FAAS_REQUIRE_REGISTRY === "1") throw new Error(`registry tests required, but ${missing}`);
  console.warn(`skipping the registry pull tests: ${missing}`);
  return missing;
}

export interface Registry {
  /** `http://127.0.0.1:<port>` */
  url: string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Starts the registry on 127.0.0.1 with a free port and a temporary storage directory. */
export async function startRegistry(): Promise<Registry> {
  const bin = registryBinary();
  if (bin === undefined) throw new Error(`the OCI registry binary (CNCF Distribution) is missing: ${BUILD_HINT}`);
  const dir = await mkdtemp(join(tmpdir(), "faas-registry-"));
  const port = await freePort();
  const config = [
    "version: 0.1",
    "log:",
    "  level: error",
    "  accesslog:",
    "    disabled: true",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${join(dir, "data")}`,
    "  maintenance:",
    "    uploadpurging:",
    "      enabled: false",
    "http:",
    `  addr: 127.0.0.1:${port}`,
    "  secret: faas-test",
    "",
  ].join("\n");
  await writeFile(join(dir, "config.yml"), config);
  const proc: ChildProcess = spawn(bin, ["serve", join(dir, "config.yml")], {
    env: { ...process.env, OTEL_TRACES_EXPORTER: "none" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  proc.stderr?.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null && proc.pid !== undefined) {
      process.kill(proc.pid, "SIGTERM");
      const killer = setTimeout(() => proc.pid !== undefined && process.kill(proc.pid, "SIGKILL"), 3000);
      await exited;
      clearTimeout(killer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  for (let i = 0; ; i++) {
    if (proc.exitCode !== null) {
      await stop();
      throw new Error(`registry exited with ${proc.exitCode} at start: ${stderr}`);
    }
    try {
      if ((await fetch(`${url}/v2/`)).ok) break;
    } catch {}
    if (i > 200) {
      await stop();
      throw new Error(`registry did not answer ${url}/v2/ within 10 s: ${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { url, stop };
}

/** One tar entry, for layers that need more than regular files (links, devices, unsafe names). */
export interface TarEntry {
  name: string;
  /** `pax`: a pax extended header (its body the records), applying to the next entry. */
  type?: "file" | "dir" | "symlink" | "hardlink" | "fifo" | "chardev" | "pax";
  body?: string | Buffer;
  linkname?: string;
  mode?: number;
}

export interface PackageLayer {
  /** Regular files by path (parent directories are implied). */
  files?: Record<string, string | Buffer>;
  /** Entries written after `files`, as given. */
  entries?: TarEntry[];
}

const TYPE_FLAGS = { file: "0", hardlink: "1", symlink: "2", chardev: "3", dir: "5", fifo: "6", pax: "x" } as const;

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, "0")}\0`;
}

function tarHeader(entry: TarEntry, size: number): Buffer {
  const header = Buffer.alloc(512);
  const name = Buffer.from(entry.name);
  if (name.length > 100) throw new Error(`tar entry name too long for this writer: ${entry.name}`);
  name.copy(header, 0);
  const type = entry.type ?? "file";
  header.write(octal(entry.mode ?? (type === "dir" ? 0o755 : 0o644), 8), 100, "ascii");
  header.write(octal(0, 8), 108, "ascii");
  header.write(octal(0, 8), 116, "ascii");
  header.write(octal(size, 12), 124, "ascii");
  header.write(octal(0, 12), 136, "ascii");
  header.write("        ", 148, "ascii");
  header.write(TYPE_FLAGS[type], 156, "ascii");
  if (entry.linkname) header.write(entry.linkname, 157, "utf8");
  header.write("ustar\0", 257, "ascii");
  header.write("00", 263, "ascii");
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "ascii");
  return header;
}

/** A deterministic tar.gz: sorted names, mtime 0, uid/gid 0, no gzip timestamp. */
export function buildLayer(layer: PackageLayer): Buffer {
  const parts: Buffer[] = [];
  for (const name of Object.keys(layer.files ?? {}).sort()) {
    const body = Buffer.from(layer.files?.[name] as string | Buffer);
    parts.push(tarHeader({ name }, body.length), body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  for (const entry of layer.entries ?? []) {
    const withBody = entry.type === undefined || entry.type === "file" || entry.type === "pax";
    const body = withBody ? Buffer.from(entry.body ?? "") : Buffer.alloc(0);
    parts.push(tarHeader(entry, body.length), body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(parts), { level: 6 });
}

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

async function pushBlob(url: string, repository: string, blob: Buffer): Promise<string> {
  const digest = sha256(blob);
  const start = await fetch(`${url}/v2/${repository}/blobs/uploads/`, { method: "POST" });
  if (start.status !== 202) throw new Error(`POST blobs/uploads: HTTP ${start.status} ${await start.text()}`);
  const location = new URL(start.headers.get("location") ?? "", url);
  location.searchParams.set("digest", digest);
  const put = await fetch(location, {
    method: "PUT",
    headers: { "content-type": "application/octet-stream" },
    body: blob,
  });
  if (put.status !== 201) throw new Error(`PUT blob ${digest}: HTTP ${put.status} ${await put.text()}`);
  return digest;
}

/** Pushes the manifest bytes as given, by their digest; returns that digest. */
export async function pushManifest(url: string, repository: string, manifest: Buffer): Promise<string> {
  const digest = sha256(manifest);
  const res = await fetch(`${url}/v2/${repository}/manifests/${digest}`, {
    method: "PUT",
    headers: { "content-type": MANIFEST_MEDIA_TYPE },
    body: manifest,
  });
  if (res.status !== 201) throw new Error(`PUT manifest ${digest}: HTTP ${res.status} ${await res.text()}`);
  return digest;
}

/**
 * Pushes a function package (layers as deterministic tar.gz blobs, the config,
 * then the manifest by digest) through the OCI distribution API; returns the
 * manifest's digest.
 */
export async function pushPackage(
  url: string,
  repository: string,
  layers: PackageLayer[],
  config: Record<string, unknown>,
): Promise<string> {
  const configBlob = Buffer.from(JSON.stringify(config));
  const configDigest = await pushBlob(url, repository, configBlob);
  const descriptors = [];
  for (const layer of layers) {
    const blob = buildLayer(layer);
    descriptors.push({ mediaType: LAYER_MEDIA_TYPE, digest: await pushBlob(url, repository, blob), size: blob.length });
  }
  const manifest = {
    schemaVersion: 2,
    mediaType: MANIFEST_MEDIA_TYPE,
    artifactType: PACKAGE_ARTIFACT_TYPE,
    config: { mediaType: PACKAGE_CONFIG_MEDIA_TYPE, digest: configDigest, size: configBlob.length },
    layers: descriptors,
  };
  return pushManifest(url, repository, Buffer.from(JSON.stringify(manifest)));
}
