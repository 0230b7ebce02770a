import type { IncomingHttpHeaders } from "node:http";
import { type ApiKeyRecord, FaasError, newApiKey } from "@faas/api";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { checkApiKey } from "./api-key-check.js";
import type { KeyLookup } from "./backend.js";

const good = newApiKey("f");
const keys: KeyLookup = {
  apiKey: (fn, id) => (fn === "f" && id === good.record.id ? (good.record as ApiKeyRecord) : undefined),
  apiKeyCount: () => 1,
};

/** Whatever a client sends in the key's headers: random text, key-shaped text, the real key with noise. */
const keyish = fc.oneof(
  fc.string({ maxLength: 200 }),
  fc.string({ unit: "binary", maxLength: 200 }),
  fc.stringMatching(/^fk_[0-9a-f]{16}_[A-Za-z0-9_-]{0,60}$/),
  fc.tuple(fc.constantFrom("", " ", "x", "\t"), fc.constantFrom("", " ", "x")).map(([a, b]) => `${a}${good.key}${b}x`),
);

describe("checkApiKey on arbitrary headers", () => {
  it("refuses with 401 or 403 whatever is sent but the key itself, never says the key, and strips it", () => {
    fc.assert(
      fc.property(
        fc.option(keyish, { nil: undefined }),
        fc.option(fc.tuple(fc.constantFrom("Bearer ", "bearer\t", "Basic ", ""), keyish), { nil: undefined }),
        (faasKey, auth) => {
          const headers: IncomingHttpHeaders = {};
          if (faasKey !== undefined) headers["x-faas-key"] = faasKey;
          if (auth !== undefined) headers.authorization = auth.join("");
          let err: unknown;
          try {
            checkApiKey("f", headers, keys);
          } catch (e) {
            err = e;
          }
          const sent = [faasKey, auth?.join("")].filter((v) => v !== undefined).map((v) => (v as string).trim());
          if (err === undefined) {
            // Only the real key (in either header) lets a request through.
            expect(sent.some((v) => v === good.key || v.replace(/^bearer[ \t]+/i, "").trim() === good.key)).toBe(true);
          } else {
            expect(err).toBeInstanceOf(FaasError);
            expect(["UNAUTHORIZED", "FORBIDDEN"]).toContain((err as FaasError).code);
            if (faasKey && faasKey.length > 8) expect((err as Error).message).not.toContain(faasKey);
          }
          expect(headers["x-faas-key"]).toBeUndefined();
        },
      ),
      { numRuns: 2000, seed: 4242 },
    );
  });
});
