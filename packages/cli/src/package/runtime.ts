/** Per-runtime facts a package build needs, and the platform it builds for. */
import { execFile } from "node:child_process";
import type { Runtime } from "@faas/api";

export type { Runtime };

export const SOURCE_EXT: Record<Runtime, string> = { python: ".py", nodejs: ".mjs" };
/** Where a runtime's dependencies sit in the package root. */
export const DEPS_DIR: Record<Runtime, string> = { python: "site-packages", nodejs: "node_modules" };

/**
 * What the dependencies are built for. Local mode: the Python that `faas up`
 * runs; a cluster: the runner image's CPython 3.11 on glibc Linux (manylinux
 * wheels only, since nothing can be compiled for it here).
 */
export interface BuildTarget {
  kind: "local" | "cluster";
  /** The Python whose pip builds (local: the one `faas up` runs). */
  python: string;
  npm: string;
  /** The cluster's nodes' architecture (`amd64` or `arm64`, FAAS_CLUSTER_ARCH); default: this machine's. */
  arch?: string;
}

export interface PythonInfo {
  /** e.g. cpython-311 */
  tag: string;
  /** e.g. linux-x86_64 */
  platform: string;
  version: string;
}

const pythonInfos = new Map<string, Promise<PythonInfo>>();

/** What an interpreter is, asked once per interpreter (a build asks for the key and again for pip). */
export function pythonInfo(python: string): Promise<PythonInfo> {
  let info = pythonInfos.get(python);
  if (info === undefined) {
    info = askPython(python);
    pythonInfos.set(python, info);
    info.catch(() => pythonInfos.delete(python));
  }
  return info;
}

async function askPython(python: string): Promise<PythonInfo> {
  const script =
    "import json, sys, sysconfig; print(json.dumps([sys.implementation.cache_tag, sysconfig.get_platform(), '%d.%d' % sys.version_info[:2]]))";
  const out = await new Promise<string>((resolve, reject) => {
    execFile(python, ["-c", script], { timeout: 20_000 }, (err, stdout) =>
      err ? reject(new Error(`cannot run ${python}: ${err.message}`)) : resolve(stdout),
    );
  });
  const [tag, platform, version] = JSON.parse(out) as [string, string, string];
  return { tag, platform, version };
}

/** The runner image's Python (Debian bookworm: CPython 3.11, glibc 2.36). */
export const CLUSTER_PYTHON = { version: "3.11", abi: "cp311", glibc: [2, 36] as const };

/** Kubernetes' name of this machine's architecture. */
export function hostArch(): string {
  return process.arch === "arm64" ? "arm64" : "amd64";
}

/** The wheel tag's architecture for a cluster's (Kubernetes) architecture. */
export function clusterArch(arch = hostArch()): string {
  return arch === "arm64" ? "aarch64" : "x86_64";
}

/** npm's `--cpu` for a cluster's architecture. */
export function npmCpu(arch = hostArch()): string {
  return arch === "arm64" ? "arm64" : "x64";
}

/** pip's options for wheels that run in the runner image, from any host. */
export function clusterPipOptions(k8sArch?: string): string[] {
  const arch = clusterArch(k8sArch);
  const platforms = [`manylinux2014_${arch}`];
  for (let minor = 17; minor <= CLUSTER_PYTHON.glibc[1]; minor++) platforms.push(`manylinux_2_${minor}_${arch}`);
  return [
    ...platforms.flatMap((p) => ["--platform", p]),
    "--implementation",
    "cp",
    "--python-version",
    CLUSTER_PYTHON.version,
    "--abi",
    CLUSTER_PYTHON.abi,
    "--only-binary=:all:",
  ];
}
