import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { buildFunctionCrd, functionCrdYaml } from "./crd.js";

describe("Function CRD", () => {
  it("crd.yaml at the repository root is current (run `npm run gen:crd`)", () => {
    const committed = readFileSync(new URL("../../../crd.yaml", import.meta.url), "utf8");
    expect(committed).toBe(functionCrdYaml());
  });

  it("is a structural schema: no additionalProperties beside properties", () => {
    const walk = (s: Record<string, unknown>, path: string): void => {
      if (s.properties !== undefined && s.additionalProperties !== undefined) throw new Error(`${path}: both`);
      for (const [k, v] of Object.entries((s.properties ?? {}) as Record<string, Record<string, unknown>>))
        walk(v, `${path}.${k}`);
    };
    const crd = buildFunctionCrd() as {
      spec: { versions: { schema: { openAPIV3Schema: Record<string, unknown> } }[] };
    };
    const schema = crd.spec.versions[0]?.schema.openAPIV3Schema as Record<string, unknown>;
    expect(() => walk(schema, "")).not.toThrow();
    const spec = (schema.properties as Record<string, Record<string, unknown>>).spec as Record<string, unknown>;
    // code or package, exactly one: a CEL rule, since `required` cannot say "one of".
    expect(spec.required).toEqual(["runtime"]);
    const rules = JSON.stringify(spec["x-kubernetes-validations"]);
    expect(rules).toContain("self.maxReplicas >= self.minReplicas");
    expect(rules).toContain("has(self.code) != has(self.__package__)");
    // spec.codeFile (a CLI file given to kubectl) is known only to be refused with what to do.
    expect(rules).toContain("!has(self.codeFile)");
    expect((spec.properties as Record<string, unknown>).codeFile).toMatchObject({ type: "string" });
  });

  it("lets spec.auth be absent (none) rather than defaulting it into every stored Function", () => {
    const crd = buildFunctionCrd() as {
      spec: {
        versions: { schema: { openAPIV3Schema: { properties: { spec: { properties: Record<string, unknown> } } } } }[];
      };
    };
    const auth = crd.spec.versions[0]?.schema.openAPIV3Schema.properties.spec.properties.auth;
    expect(auth).toMatchObject({ type: "string", enum: ["none", "apiKey"] });
    expect(auth).not.toHaveProperty("default");
  });
});
