/**
 * The invoke-time check of `spec.auth: apiKey` (ADR 0011): the key comes in
 * `X-Faas-Key` or `Authorization: Bearer`, is looked up by its id among the
 * function's keys and compared by hash in constant time. Whatever carried the
 * key is removed from the request before it goes to a runner.
 */
import type { IncomingHttpHeaders } from "node:http";
import { API_KEY_HEADER, apiKeyId, apiKeyMatches, FaasError } from "@faas/api";
import type { KeyLookup } from "./backend.js";

const BEARER = /^bearer[ \t]+/i;

/**
 * Throws UNAUTHORIZED (no key sent) or FORBIDDEN (a key that is not one of
 * `fn`'s). Never puts the key in a message. Strips the key's header either way.
 */
export function checkApiKey(fn: string, headers: IncomingHttpHeaders, keys: KeyLookup | undefined): void {
  const key = takeKey(headers);
  if (key === undefined) {
    throw new FaasError(
      "UNAUTHORIZED",
      `function ${fn} needs an API key: send "Authorization: Bearer <key>" or "X-Faas-Key: <key>" (\`faas keys create ${fn}\` makes one)`,
    );
  }
  const id = apiKeyId(key);
  const record = id === undefined ? undefined : keys?.apiKey(fn, id);
  // A malformed key, an unknown or revoked id and another function's key all look the same to the caller.
  if (record === undefined || !apiKeyMatches(key, record.sha256)) {
    throw new FaasError("FORBIDDEN", `this API key does not grant access to function ${fn}`);
  }
}

/** The presented key, removed from the headers; `X-Faas-Key` first, so `Authorization` can stay the function's own. */
function takeKey(headers: IncomingHttpHeaders): string | undefined {
  let key: string | undefined;
  const header = headers[API_KEY_HEADER];
  if (header !== undefined) {
    key = Array.isArray(header) ? header.join(",") : header;
    delete headers[API_KEY_HEADER];
  }
  const authorization = headers.authorization;
  if (authorization !== undefined && BEARER.test(authorization)) {
    const token = authorization.replace(BEARER, "").trim();
    if (key === undefined) {
      key = token;
      delete headers.authorization;
    } else if (apiKeyId(token) !== undefined) {
      // A second copy of a key never reaches the function either.
      delete headers.authorization;
    }
  }
  return key?.trim();
}
