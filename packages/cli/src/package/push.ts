/**
 * Pushes a package to an OCI registry with the distribution API: each blob
 * unless the repository has it (HEAD); a blob another repository of the same
 * registry has is mounted from it (POST `?mount=&from=`, no bytes sent; a
 * registry that will not mount answers with an upload, which is then made);
 * otherwise a monolithic upload (POST, then PUT with the digest); then the
 * manifest by digest. The registry checks every digest;
 * the answer's `Docker-Content-Digest` is checked here too.
 */
import { readFile } from "node:fs/promises";
import type { Artifact, Blob } from "./artifact.js";
import { MANIFEST_MEDIA_TYPE } from "./artifact.js";

export class PushError extends Error {
  override name = "PushError";
}

export interface PushResult {
  /** Blobs uploaded (the others were there already, or mounted). */
  uploaded: number;
  uploadedBytes: number;
  /** Blobs mounted from another repository. */
  mounted: number;
}

export interface PushOptions {
  progress?: (message: string) => void;
  /** A repository of the same registry that has this blob, if one is known. */
  mountFrom?: (digest: string) => string | undefined;
}

export async function pushArtifact(
  base: string,
  repository: string,
  artifact: Artifact,
  opts: PushOptions = {},
): Promise<PushResult> {
  const progress = opts.progress ?? (() => {});
  const root = `${base.replace(/\/$/, "")}/v2/${repository}`;
  let uploaded = 0;
  let uploadedBytes = 0;
  let mounted = 0;
  for (const blob of [artifact.config, ...artifact.layers]) {
    const head = await call(`${root}/blobs/${blob.digest}`, { method: "HEAD" });
    if (head.status === 200) continue;
    const from = opts.mountFrom?.(blob.digest);
    const query = from !== undefined && from !== repository ? `?mount=${blob.digest}&from=${from}` : "";
    const start = await call(`${root}/blobs/uploads/${query}`, { method: "POST" });
    if (start.status === 201 && query !== "") {
      progress(`mounted ${blob.digest.slice(7, 19)} (${mib(blob.size)}) from ${from}`);
      mounted++;
      continue;
    }
    progress(`pushing ${blob.digest.slice(7, 19)} (${mib(blob.size)})`);
    if (start.status !== 202) throw await failure(start, `starting the upload of ${blob.digest}`);
    const location = start.headers.get("location");
    if (location === null) throw new PushError("the registry gave no upload location");
    const url = new URL(location, base);
    url.searchParams.set("digest", blob.digest);
    const put = await call(url.toString(), {
      method: "PUT",
      headers: { "content-type": "application/octet-stream" },
      body: await bytes(blob),
    });
    if (put.status !== 201) throw await failure(put, `uploading ${blob.digest}`);
    uploaded++;
    uploadedBytes += blob.size;
  }
  const put = await call(`${root}/manifests/${artifact.digest}`, {
    method: "PUT",
    headers: { "content-type": MANIFEST_MEDIA_TYPE },
    body: artifact.manifest,
  });
  if (put.status !== 201) throw await failure(put, "storing the manifest");
  const stored = put.headers.get("docker-content-digest");
  if (stored !== null && stored !== artifact.digest) {
    throw new PushError(`the registry stored the manifest as ${stored}, not ${artifact.digest}`);
  }
  return { uploaded, uploadedBytes, mounted };
}

async function bytes(blob: Blob): Promise<Buffer> {
  if (blob.data !== undefined) return blob.data;
  return readFile(blob.path as string);
}

async function call(url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, { ...init, redirect: "follow", signal: AbortSignal.timeout(300_000) });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new PushError(
      `cannot reach the registry at ${new URL(url).origin}: ${cause?.code ?? cause?.message ?? (err as Error).message}`,
    );
  }
}

async function failure(res: Response, what: string): Promise<PushError> {
  const text = await res.text().catch(() => "");
  let detail = text.slice(0, 300);
  try {
    const body = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
    const first = body.errors?.[0];
    if (first !== undefined) detail = `${first.code ?? ""} ${first.message ?? ""}`.trim();
  } catch {
    // not JSON: the text as it came
  }
  return new PushError(`${what}: the registry answered ${res.status}${detail ? `: ${detail}` : ""}`);
}

const mib = (n: number): string => `${(n / 1024 / 1024).toFixed(1)} MiB`;
