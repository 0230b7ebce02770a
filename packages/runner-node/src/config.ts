import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import {
  DEFAULT_PACKAGE_MAX_BYTES,
  DEFAULT_PACKAGE_MAX_ENTRIES,
  DEFAULT_PACKAGE_PULL_TIMEOUT_MS,
} from "./package-root.js";

/** The runner's configuration, read once from the environment (docs/runner-protocol.md). */
export interface RunnerConfig {
  /** FAAS_PORT: TCP port; 0 picks a free one (printed in the `listening` line). */
  port: number;
  /** FAAS_HOST: address to bind. */
  host: string;
  /** FAAS_CODE_DIR: specialize from `function.json` here at start, if present. */
  codeDir: string | undefined;
  /**
   * FAAS_FUNCTION_SPEC and FAAS_FUNCTION_CODE: the same `function.json` and code file
   * as environment variables (a pod gets them without a volume); loaded at start.
   */
  functionSpec: string | undefined;
  functionCode: string | undefined;
  /** Started with its function's code (FAAS_CODE_DIR or FAAS_FUNCTION_SPEC): it never specializes. */
  preloaded: boolean;
  /**
   * FAAS_ANNOUNCE_URL: once ready, POST this pod's address there (the gateways' announce
   * port), with the pod's identity from the downward API (FAAS_POD_NAMESPACE, _NAME, _UID, _IP).
   */
  announceUrl: string | undefined;
  pod: { namespace?: string; name?: string; uid?: string; ip?: string };
  /** FAAS_KEEPALIVE_SECONDS: idle keep-alive timeout; must exceed the gateway pool's. */
  keepAliveSeconds: number;
  /** Time a client has to send complete request headers. */
  headersTimeoutSeconds: number;
  /** Largest `/specialize` body accepted. */
  maxSpecBytes: number;
  /** FAAS_PARENT_PID (local mode): the supervising process; the runner exits when it is gone. */
  parentPid: number | undefined;
  /**
   * FAAS_LOAD_TIMEOUT_MS: a module that has not finished loading by then fails
   * the specialization (400 FUNCTION_LOAD_FAILED with `loadTimeoutMs`), and the
   * runner exits with status 3 once it has answered.
   */
  loadTimeoutMs: number;
  /** FAAS_SPECIALIZE_TOKEN: when set, `POST /specialize` needs `Authorization: Bearer <token>` (pool pods). */
  specializeToken: string | undefined;
  /**
   * FAAS_POOL_CLAIM_FILE (pool mode): a file on a volume that outlives the container,
   * written on specialization. A runner that finds it at start restarted after a claim:
   * it stays unready and never specializes again.
   */
  poolClaimFile: string | undefined;
  /** FAAS_PACKAGE_CACHE_DIR: where pulled packages are unpacked, `<dir>/<hex>` (default `$TMPDIR/faas-packages`). */
  packageCacheDir: string;
  /** FAAS_PACKAGE_MAX_BYTES: the most a pulled package may unpack to. */
  packageMaxBytes: number;
  /** FAAS_PACKAGE_MAX_ENTRIES: the most tar entries a pulled package may have. */
  packageMaxEntries: number;
  /** FAAS_PACKAGE_PULL_TIMEOUT_MS: the deadline of a package pull (not part of the load timeout). */
  packagePullTimeoutMs: number;
}

export const DEFAULT_LOAD_TIMEOUT_MS = 10_000;

function readNumber(env: NodeJS.ProcessEnv, key: string, fallback: number, min: number): number {
  const raw = env[key];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min) {
    throw new Error(`${key} must be a number ≥ ${min}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

export function loadConfig(env: NodeJS.ProcessEnv): RunnerConfig {
  return {
    port: readNumber(env, "FAAS_PORT", 8080, 0),
    host: env.FAAS_HOST || "0.0.0.0",
    codeDir: env.FAAS_CODE_DIR || undefined,
    functionSpec: env.FAAS_FUNCTION_SPEC || undefined,
    functionCode: env.FAAS_FUNCTION_CODE || undefined,
    preloaded: Boolean(env.FAAS_CODE_DIR || env.FAAS_FUNCTION_SPEC),
    announceUrl: env.FAAS_ANNOUNCE_URL || undefined,
    pod: {
      namespace: env.FAAS_POD_NAMESPACE || undefined,
      name: env.FAAS_POD_NAME || undefined,
      uid: env.FAAS_POD_UID || undefined,
      ip: env.FAAS_POD_IP || undefined,
    },
    keepAliveSeconds: readNumber(env, "FAAS_KEEPALIVE_SECONDS", 75, 1),
    headersTimeoutSeconds: 10,
    maxSpecBytes: 16 * 1024 * 1024,
    parentPid: readNumber(env, "FAAS_PARENT_PID", 0, 0) || undefined,
    loadTimeoutMs: readNumber(env, "FAAS_LOAD_TIMEOUT_MS", DEFAULT_LOAD_TIMEOUT_MS, 1),
    specializeToken: env.FAAS_SPECIALIZE_TOKEN || undefined,
    poolClaimFile: env.FAAS_POOL_CLAIM_FILE || undefined,
    packageCacheDir: resolve(env.FAAS_PACKAGE_CACHE_DIR || join(tmpdir(), "faas-packages")),
    packageMaxBytes: readNumber(env, "FAAS_PACKAGE_MAX_BYTES", DEFAULT_PACKAGE_MAX_BYTES, 1),
    packageMaxEntries: readNumber(env, "FAAS_PACKAGE_MAX_ENTRIES", DEFAULT_PACKAGE_MAX_ENTRIES, 1),
    packagePullTimeoutMs: readNumber(env, "FAAS_PACKAGE_PULL_TIMEOUT_MS", DEFAULT_PACKAGE_PULL_TIMEOUT_MS, 1),
  };
}
