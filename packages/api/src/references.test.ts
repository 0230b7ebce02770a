import { describe, expect, it } from "vitest";
import { FaasError } from "./errors.js";
import { parseFunction } from "./function-spec.js";
import { type ReferenceKind, resolveEnv } from "./references.js";

const STORES: Record<ReferenceKind, Record<string, Record<string, string>>> = {
  secret: { db: { password: "pw", user: "u", "not-a-name": "x", FAAS_PORT: "1" } },
  config: { settings: { MODE: "blue", password: "from-config" } },
};

function lookup(kind: ReferenceKind, name: string, field: string): Record<string, string> {
  const data = STORES[kind][name];
  if (data === undefined) throw new FaasError("INVALID_SPEC", `${field}: no ${kind} ${name}`);
  return data;
}

const spec = (extra: Record<string, unknown>) =>
  parseFunction({
    apiVersion: "faas.example.com/v1",
    kind: "Function",
    metadata: { name: "f" },
    spec: { runtime: "python", code: "def handle(r): pass", ...extra },
  }).spec;

describe("resolveEnv", () => {
  it.each([
    { name: "literal values only", extra: { env: [{ name: "A", value: "1" }] }, want: { A: "1" } },
    {
      name: "a Secret key",
      extra: { env: [{ name: "P", valueFrom: { secretKeyRef: { name: "db", key: "password" } } }] },
      want: { P: "pw" },
    },
    {
      name: "envFrom skips keys that are not variable names and the platform's own",
      extra: { envFrom: [{ secretRef: { name: "db" } }] },
      want: { password: "pw", user: "u" },
    },
    {
      name: "env wins over envFrom, whatever the order",
      extra: {
        envFrom: [{ configMapRef: { name: "settings" } }, { secretRef: { name: "db" } }],
        env: [{ name: "MODE", value: "green" }],
      },
      want: { MODE: "green", password: "pw", user: "u" },
    },
    {
      name: "a later envFrom source wins over an earlier one",
      extra: { envFrom: [{ secretRef: { name: "db" } }, { configMapRef: { name: "settings" } }] },
      want: { MODE: "blue", password: "from-config", user: "u" },
    },
  ])("$name", ({ extra, want }) => {
    expect(resolveEnv(spec(extra), lookup)).toEqual(want);
  });

  it("names the field and the key, never a value, when a key is missing", () => {
    const s = spec({ env: [{ name: "P", valueFrom: { secretKeyRef: { name: "db", key: "nope" } } }] });
    expect(() => resolveEnv(s, lookup)).toThrow('spec.env.0.valueFrom.secretKeyRef: Secret db has no key "nope"');
    expect(() => resolveEnv(s, lookup, { noun: (k) => k, hint: () => "see the list" })).toThrow(
      'secret db has no key "nope" (see the list)',
    );
    try {
      resolveEnv(s, lookup);
    } catch (err) {
      expect((err as Error).message).not.toContain("pw");
    }
  });

  it("passes the lookup's own error on (a missing object)", () => {
    const s = spec({ envFrom: [{ secretRef: { name: "absent" } }] });
    expect(() => resolveEnv(s, lookup)).toThrow("spec.envFrom.0.secretRef: no secret absent");
  });
});
