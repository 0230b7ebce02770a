/**
 * API keys for invoking functions with `spec.auth: apiKey` (ADR 0011).
 *
 * A key is `fk_<id>_<secret>`: the id (16 hex digits) names the key so a
 * gateway finds its record without scanning; the secret is 32 random bytes,
 * base64url. Only `sha256(key)` is ever stored; a presented key is hashed and
 * compared with `timingSafeEqual`, so neither the store nor the comparison
 * leaks the key.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

export const API_KEY_PREFIX = "fk_";
const ID_BYTES = 8;
const SECRET_BYTES = 32;
const KEY_PATTERN = /^fk_([0-9a-f]{16})_([A-Za-z0-9_-]{43,})$/;
const ID_PATTERN = /^[0-9a-f]{16}$/;
/** The header a client may send the key in; `Authorization: Bearer <key>` works too. */
export const API_KEY_HEADER = "x-faas-key";

/** What is stored about a key: never the key itself. */
export interface ApiKeyRecord {
  id: string;
  function: string;
  /** Hex sha256 of the whole key. */
  sha256: string;
  /** RFC 3339. */
  createdAt: string;
  /**
   * On Kubernetes, the uid of the Function the key was made for: a Function
   * deleted and created again under the same name does not inherit its keys.
   */
  functionUid?: string;
}

/** A new key: `key` is shown once, to whoever created it; `record` is what is stored. */
export interface NewApiKey {
  key: string;
  record: ApiKeyRecord;
}

export function newApiKey(fn: string, opts: { now?: Date; functionUid?: string } = {}): NewApiKey {
  const id = randomBytes(ID_BYTES).toString("hex");
  const key = `${API_KEY_PREFIX}${id}_${randomBytes(SECRET_BYTES).toString("base64url")}`;
  const createdAt = (opts.now ?? new Date()).toISOString();
  const record: ApiKeyRecord = { id, function: fn, sha256: hashApiKey(key), createdAt };
  if (opts.functionUid !== undefined) record.functionUid = opts.functionUid;
  return { key, record };
}

export function hashApiKey(key: string): string {
  return createHash("sha256").update(key).digest("hex");
}

/** The id of a well-formed key, or undefined. */
export function apiKeyId(key: string): string | undefined {
  return KEY_PATTERN.exec(key)?.[1];
}

export function isApiKeyId(id: string): boolean {
  return ID_PATTERN.test(id);
}

/** Constant-time: compares the sha256 of `key` with a stored hex hash. */
export function apiKeyMatches(key: string, sha256Hex: string): boolean {
  const expected = Buffer.from(sha256Hex, "hex");
  const given = createHash("sha256").update(key).digest();
  return expected.length === given.length && timingSafeEqual(given, expected);
}

/** Reads a stored record (from a file or a Secret), or undefined when it is not one. */
export function parseApiKeyRecord(value: unknown): ApiKeyRecord | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const r = value as Partial<ApiKeyRecord>;
  if (typeof r.id !== "string" || !isApiKeyId(r.id)) return undefined;
  if (typeof r.function !== "string" || typeof r.createdAt !== "string") return undefined;
  if (typeof r.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(r.sha256)) return undefined;
  const record: ApiKeyRecord = { id: r.id, function: r.function, sha256: r.sha256, createdAt: r.createdAt };
  if (typeof r.functionUid === "string") record.functionUid = r.functionUid;
  return record;
}
