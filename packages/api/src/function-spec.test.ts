import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { FaasError } from "./errors.js";
import { parseFunction, SPEC_DEFAULTS } from "./function-spec.js";
import { toLoadSpec } from "./load-spec.js";
import { loadManifests, loadManifestText } from "./manifest.js";
import { codeFileName, deploymentName } from "./names.js";
import { parseQuantity } from "./quantity.js";
import { hasReferences, references } from "./references.js";

const valid = {
  apiVersion: "faas.example.com/v1",
  kind: "Function",
  metadata: { name: "hello" },
  spec: { runtime: "python", code: "def handle(req):\n    return 'hi'\n" },
};

function errorOf(input: unknown): FaasError {
  try {
    parseFunction(input);
  } catch (err) {
    if (err instanceof FaasError) return err;
    throw err;
  }
  throw new Error("expected parseFunction to throw");
}

describe("parseFunction", () => {
  it("applies the documented defaults", () => {
    const fn = parseFunction(valid);
    expect(fn.spec).toMatchObject({
      handler: "main.handle",
      minReplicas: 0,
      maxReplicas: SPEC_DEFAULTS.maxReplicas,
      concurrency: SPEC_DEFAULTS.concurrency,
      timeoutSeconds: 30,
      idleSeconds: SPEC_DEFAULTS.idleSeconds,
      env: [],
      auth: "none",
    });
  });

  it("accepts auth: apiKey", () => {
    expect(parseFunction({ ...valid, spec: { ...valid.spec, auth: "apiKey" } }).spec.auth).toBe("apiKey");
  });

  it("reads the older env map as the list, and keeps values from Secrets out of the load spec", () => {
    const fn = parseFunction({
      ...valid,
      spec: {
        ...valid.spec,
        env: { A: "1" },
        envFrom: [{ configMapRef: { name: "settings" } }],
        secrets: [{ name: "tls", mountPath: "/etc/secrets/tls" }],
      },
    });
    expect(fn.spec.env).toEqual([{ name: "A", value: "1" }]);
    const withRef = parseFunction({
      ...valid,
      spec: {
        ...valid.spec,
        env: [
          { name: "A", value: "1" },
          { name: "PASSWORD", valueFrom: { secretKeyRef: { name: "db", key: "password" } } },
          { name: "MODE", valueFrom: { configMapKeyRef: { name: "settings", key: "mode" } } },
        ],
        envFrom: [{ secretRef: { name: "api-keys" } }],
        secrets: [{ name: "tls", mountPath: "/etc/secrets/tls" }],
      },
    });
    expect(toLoadSpec(withRef).env).toEqual({ A: "1" });
    expect(references(withRef.spec)).toEqual({ secrets: ["api-keys", "db", "tls"], configMaps: ["settings"] });
    expect(hasReferences(fn.spec)).toBe(true);
    expect(hasReferences(parseFunction(valid).spec)).toBe(false);
  });

  it("accepts resources in Kubernetes quantity syntax", () => {
    const fn = parseFunction({
      ...valid,
      spec: {
        ...valid.spec,
        resources: { requests: { cpu: "250m", memory: "64Mi" }, limits: { cpu: 1, memory: "1Gi" } },
      },
    });
    expect(fn.spec.resources?.limits?.cpu).toBe(1);
    expect(parseQuantity("250m")).toBe(0.25);
    expect(parseQuantity("1Gi")).toBe(2 ** 30);
    expect(parseQuantity("1e3")).toBe(1000);
    expect(parseQuantity("1.5")).toBe(1.5);
    expect(parseQuantity("1 Gi")).toBeUndefined();
    expect(parseQuantity("-1")).toBeUndefined();
  });

  const cases: {
    name: string;
    patch: (o: typeof valid & Record<string, unknown>) => unknown;
    field: string;
    says: RegExp;
  }[] = [
    {
      name: "unknown runtime",
      patch: (o) => ({ ...o, spec: { ...o.spec, runtime: "ruby" } }),
      field: "spec.runtime",
      says: /one of "python", "nodejs"/,
    },
    {
      name: "missing code",
      patch: (o) => ({ ...o, spec: { runtime: "python" } }),
      field: "spec.code",
      says: /required/,
    },
    {
      name: "max below min",
      patch: (o) => ({ ...o, spec: { ...o.spec, minReplicas: 3, maxReplicas: 1 } }),
      field: "spec.maxReplicas",
      says: />= spec.minReplicas/,
    },
    {
      name: "negative min",
      patch: (o) => ({ ...o, spec: { ...o.spec, minReplicas: -1 } }),
      field: "spec.minReplicas",
      says: />=0|too small/i,
    },
    {
      name: "fractional concurrency",
      patch: (o) => ({ ...o, spec: { ...o.spec, concurrency: 1.5 } }),
      field: "spec.concurrency",
      says: /int/i,
    },
    {
      name: "bad handler",
      patch: (o) => ({ ...o, spec: { ...o.spec, handler: "handle" } }),
      field: "spec.handler",
      says: /<module>\.<function>/,
    },
    {
      name: "bad name",
      patch: (o) => ({ ...o, metadata: { name: "Hello_World" } }),
      field: "metadata.name",
      says: /lowercase/,
    },
    {
      name: "long name",
      patch: (o) => ({ ...o, metadata: { name: "a".repeat(60) } }),
      field: "metadata.name",
      says: /at most 53/,
    },
    {
      name: "reserved env",
      patch: (o) => ({ ...o, spec: { ...o.spec, env: { FAAS_PORT: "1" } } }),
      field: "spec.env.0.name",
      says: /reserved/,
    },
    {
      name: "env with both value and valueFrom",
      patch: (o) => ({
        ...o,
        spec: { ...o.spec, env: [{ name: "A", value: "x", valueFrom: { secretKeyRef: { name: "s", key: "k" } } }] },
      }),
      field: "spec.env.0",
      says: /exactly one of value and valueFrom/,
    },
    {
      name: "valueFrom with both refs",
      patch: (o) => ({
        ...o,
        spec: {
          ...o.spec,
          env: [
            {
              name: "A",
              valueFrom: { secretKeyRef: { name: "s", key: "k" }, configMapKeyRef: { name: "c", key: "k" } },
            },
          ],
        },
      }),
      field: "spec.env.0.valueFrom",
      says: /exactly one of secretKeyRef and configMapKeyRef/,
    },
    {
      name: "a secret name that is not a Kubernetes name",
      patch: (o) => ({
        ...o,
        spec: { ...o.spec, env: [{ name: "A", valueFrom: { secretKeyRef: { name: "../etc", key: "k" } } }] },
      }),
      field: "spec.env.0.valueFrom.secretKeyRef.name",
      says: /name of a Secret/,
    },
    {
      name: "env set twice",
      patch: (o) => ({
        ...o,
        spec: {
          ...o.spec,
          env: [
            { name: "A", value: "1" },
            { name: "A", value: "2" },
          ],
        },
      }),
      field: "spec.env.1.name",
      says: /set twice/,
    },
    {
      name: "envFrom with neither ref",
      patch: (o) => ({ ...o, spec: { ...o.spec, envFrom: [{}] } }),
      field: "spec.envFrom.0",
      says: /exactly one of secretRef and configMapRef/,
    },
    {
      name: "a relative mount path",
      patch: (o) => ({ ...o, spec: { ...o.spec, secrets: [{ name: "s", mountPath: "secrets" }] } }),
      field: "spec.secrets.0.mountPath",
      says: /absolute path/,
    },
    {
      name: "a mount over the code",
      patch: (o) => ({ ...o, spec: { ...o.spec, secrets: [{ name: "s", mountPath: "/code/keys" }] } }),
      field: "spec.secrets.0.mountPath",
      says: /cover \/code/,
    },
    {
      name: "a mount hiding /etc",
      patch: (o) => ({ ...o, spec: { ...o.spec, secrets: [{ name: "s", mountPath: "/etc" }] } }),
      field: "spec.secrets.0.mountPath",
      says: /hide \/etc/,
    },
    {
      name: "overlapping mounts",
      patch: (o) => ({
        ...o,
        spec: {
          ...o.spec,
          secrets: [
            { name: "a", mountPath: "/etc/secrets" },
            { name: "b", mountPath: "/etc/secrets/b" },
          ],
        },
      }),
      field: "spec.secrets.1.mountPath",
      says: /overlaps/,
    },
    {
      name: "a cpu that is not a quantity",
      patch: (o) => ({ ...o, spec: { ...o.spec, resources: { limits: { cpu: "two" } } } }),
      field: "spec.resources.limits.cpu",
      says: /Kubernetes quantity/,
    },
    {
      name: "an unknown resource",
      patch: (o) => ({ ...o, spec: { ...o.spec, resources: { limits: { gpu: "1" } } } }),
      field: "spec.resources.limits",
      says: /unknown field.*gpu/,
    },
    {
      name: "a request above its limit",
      patch: (o) => ({
        ...o,
        spec: { ...o.spec, resources: { requests: { memory: "2Gi" }, limits: { memory: "512Mi" } } },
      }),
      field: "spec.resources.requests.memory",
      says: /<= spec.resources.limits.memory \(got request 2Gi > limit 512Mi\)/,
    },
    {
      name: "unknown spec field",
      patch: (o) => ({ ...o, spec: { ...o.spec, replicas: 2 } }),
      field: "spec",
      says: /unknown field.*replicas/,
    },
    {
      name: "unknown auth mode",
      patch: (o) => ({ ...o, spec: { ...o.spec, auth: "basic" } }),
      field: "spec.auth",
      says: /one of "none", "apiKey"/,
    },
    { name: "wrong kind", patch: (o) => ({ ...o, kind: "Deployment" }), field: "kind", says: /Function/ },
  ];
  for (const c of cases) {
    it(`refuses ${c.name}, naming ${c.field}`, () => {
      const err = errorOf(c.patch(valid as typeof valid & Record<string, unknown>));
      expect(err.code).toBe("INVALID_SPEC");
      expect(err.status).toBe(400);
      const issues = (err.details?.issues ?? []) as string[];
      const line = issues.find((l) => l.startsWith(`${c.field}:`) || l.startsWith(`${c.field} `));
      expect(line, `issues: ${JSON.stringify(err.details?.issues)}`).toBeDefined();
      expect(line).toMatch(c.says);
    });
  }
});

describe("manifests", () => {
  const dirs: string[] = [];
  afterEach(async () => {
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  });

  it("inlines spec.codeFile relative to the YAML file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "faas-manifest-"));
    dirs.push(dir);
    await writeFile(join(dir, "fn.py"), "def handle(req):\n    return 'from file'\n");
    await writeFile(
      join(dir, "fn.yaml"),
      "apiVersion: faas.example.com/v1\nkind: Function\nmetadata:\n  name: f\nspec:\n  runtime: python\n  handler: fn.handle\n  codeFile: fn.py\n",
    );
    const [fn] = await loadManifests(dir);
    expect(fn?.spec.code).toContain("from file");
    expect(fn?.spec).not.toHaveProperty("codeFile");
  });

  it("names the file and document of a bad manifest", async () => {
    const text = `${"apiVersion: faas.example.com/v1\nkind: Function\nmetadata: {name: a}\nspec: {runtime: python, code: x}\n"}---\napiVersion: faas.example.com/v1\nkind: Function\nmetadata: {name: b}\nspec: {runtime: go, code: x}\n`;
    await expect(loadManifestText(text, "two.yaml", "/")).rejects.toThrow(
      /two\.yaml \(document 2\)[\s\S]*spec\.runtime/,
    );
  });

  it("loads the shipped examples", async () => {
    const fns = await loadManifests(new URL("../../../examples", import.meta.url).pathname);
    const names = fns.map((f) => f.metadata.name);
    expect(names).toEqual(expect.arrayContaining(["hello", "cpu-test", "hello-node", "echo"]));
    const cpu = fns.find((f) => f.metadata.name === "cpu-test");
    expect(cpu?.spec).toMatchObject({ minReplicas: 1, maxReplicas: 5 });
  });
});

describe("names", () => {
  it("derives child names and code files", () => {
    expect(deploymentName("hello")).toBe("fn-hello-deploy");
    expect(codeFileName("python", "main.handle")).toBe("main.py");
    expect(codeFileName("nodejs", "index.handler")).toBe("index.mjs");
  });
});

describe("spec.package", () => {
  const digest = `sha256:${"0a".repeat(32)}`;
  const base = { apiVersion: "faas.example.com/v1", kind: "Function", metadata: { name: "p" } };
  const parse = (spec: Record<string, unknown>) => () =>
    parseFunction({ ...base, spec: { runtime: "python", ...spec } });

  it.each([
    ["a digest alone (local mode)", { package: { digest } }],
    [
      "a digest with registry and repository",
      { package: { digest, registry: "http://faas-registry.faas-system.svc:5000", repository: "default/p" } },
    ],
    [
      "https and a nested repository",
      { package: { digest, registry: "https://r.example.com", repository: "a/b/c-d" } },
    ],
  ])("accepts %s", (_what, spec) => {
    expect(parse(spec)().spec.package?.digest).toBe(digest);
  });

  it.each([
    ["neither code nor package", {}, "spec.code: is required (or spec.package"],
    ["both", { code: "x", package: { digest } }, "spec.package: give spec.code or spec.package, not both"],
    ["a short digest", { package: { digest: "sha256:abc" } }, "spec.package.digest: must be"],
    ["an uppercase digest", { package: { digest: digest.toUpperCase() } }, "spec.package.digest: must be"],
    [
      "a registry without repository",
      { package: { digest, registry: "http://r:5000" } },
      "registry and repository go together",
    ],
    [
      "a registry with a path",
      { package: { digest, registry: "http://r:5000/v2", repository: "a" } },
      "spec.package.registry",
    ],
    [
      "an uppercase repository",
      { package: { digest, registry: "http://r", repository: "A/b" } },
      "spec.package.repository",
    ],
    ["an unknown field", { package: { digest, tag: "latest" } }, "unknown field(s) tag"],
  ])("refuses %s", (_what, spec, message) => {
    expect(parse(spec)).toThrow(message);
  });
});

describe("spec.package, any value", () => {
  it("parses to a package with a sha256 digest and registry and repository both or neither, or is refused naming spec.package", () => {
    const text = fc.oneof(fc.string({ maxLength: 80 }), fc.stringMatching(/^sha256:[a-f0-9]{64}$/));
    const value = fc.oneof(
      fc.jsonValue(),
      fc.record(
        {
          digest: text,
          registry: fc.oneof(fc.string(), fc.stringMatching(/^https?:\/\/[a-z0-9.-]{1,20}(:[0-9]{1,5})?$/)),
          repository: fc.oneof(fc.string(), fc.stringMatching(/^[a-z0-9]+(\/[a-z0-9]+){0,2}$/)),
          extra: fc.jsonValue(),
        },
        { requiredKeys: [] },
      ),
    );
    fc.assert(
      fc.property(value, (pkg) => {
        const input = { apiVersion: "faas.example.com/v1", kind: "Function", metadata: { name: "p" } };
        let parsed: ReturnType<typeof parseFunction>;
        try {
          parsed = parseFunction({ ...input, spec: { runtime: "python", package: pkg } });
        } catch (err) {
          expect((err as { code?: string }).code).toBe("INVALID_SPEC");
          expect((err as Error).message).toMatch(/spec\.(package|code)/);
          return;
        }
        const p = parsed.spec.package;
        expect(p?.digest).toMatch(/^sha256:[a-f0-9]{64}$/);
        expect(p?.registry === undefined).toBe(p?.repository === undefined);
      }),
      { numRuns: 2000, seed: 3 },
    );
  });
});
