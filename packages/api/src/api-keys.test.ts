import { describe, expect, it } from "vitest";
import { apiKeyId, apiKeyMatches, hashApiKey, isApiKeyId, newApiKey, parseApiKeyRecord } from "./api-keys.js";

describe("API keys", () => {
  it("makes fk_<id>_<secret> keys with 32 random bytes of secret, and stores only the hash", () => {
    const { key, record } = newApiKey("hello", { now: new Date("2026-01-02T03:04:05Z") });
    expect(key).toMatch(/^fk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(key.split("_").slice(2).join("_"), "base64url")).toHaveLength(32);
    expect(record).toEqual({
      id: apiKeyId(key),
      function: "hello",
      sha256: hashApiKey(key),
      createdAt: "2026-01-02T03:04:05.000Z",
    });
    expect(JSON.stringify(record)).not.toContain(key.slice(20));
  });

  it("gives every key its own id and secret", () => {
    const keys = Array.from({ length: 50 }, () => newApiKey("f").key);
    expect(new Set(keys).size).toBe(50);
    expect(new Set(keys.map(apiKeyId)).size).toBe(50);
  });

  it("reads the id only from well-formed keys", () => {
    const { key, record } = newApiKey("f");
    expect(apiKeyId(key)).toBe(record.id);
    for (const bad of ["", "fk_", "Bearer x", key.slice(0, 30), key.replace("fk_", "fx_"), `${record.id}`]) {
      expect(apiKeyId(bad), bad).toBeUndefined();
    }
    expect(isApiKeyId(record.id)).toBe(true);
    expect(isApiKeyId("../etc")).toBe(false);
  });

  it("matches a key against its stored hash, and nothing else", () => {
    const a = newApiKey("f");
    const b = newApiKey("f");
    expect(apiKeyMatches(a.key, a.record.sha256)).toBe(true);
    expect(apiKeyMatches(b.key, a.record.sha256)).toBe(false);
    expect(apiKeyMatches(`${a.key}x`, a.record.sha256)).toBe(false);
    expect(apiKeyMatches(a.key, "not hex")).toBe(false);
  });

  it("parses stored records, keeping the function uid, and refuses anything else", () => {
    const { record } = newApiKey("f", { functionUid: "uid-1" });
    expect(parseApiKeyRecord(JSON.parse(JSON.stringify(record)))).toEqual(record);
    expect(parseApiKeyRecord({ ...record, sha256: "abc" })).toBeUndefined();
    expect(parseApiKeyRecord({ ...record, id: "x" })).toBeUndefined();
    expect(parseApiKeyRecord(null)).toBeUndefined();
  });
});
