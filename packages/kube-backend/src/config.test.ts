import { describe, expect, it } from "vitest";
import { loadKubeGatewayConfig } from "./config.js";

describe("in-cluster gateway configuration", () => {
  it.each([
    { env: {}, namespaces: ["default"], perNamespace: 10_000 },
    { env: { FAAS_FUNCTION_NAMESPACE: "fns" }, namespaces: ["fns"], perNamespace: 10_000 },
    {
      env: { FAAS_FUNCTION_NAMESPACES: "default, team-a,team-b" },
      namespaces: ["default", "team-a", "team-b"],
      perNamespace: 3333,
    },
    // The list wins over the single setting; the first is the default namespace.
    {
      env: { FAAS_FUNCTION_NAMESPACE: "x", FAAS_FUNCTION_NAMESPACES: "a,b" },
      namespaces: ["a", "b"],
      perNamespace: 5000,
    },
    {
      env: { FAAS_FUNCTION_NAMESPACES: "a,b", FAAS_MAX_PARKED_TOTAL: "100" },
      namespaces: ["a", "b"],
      perNamespace: 50,
    },
    {
      env: { FAAS_FUNCTION_NAMESPACES: "a,b", FAAS_MAX_PARKED_PER_NAMESPACE: "7" },
      namespaces: ["a", "b"],
      perNamespace: 7,
    },
  ])("$env → $namespaces, $perNamespace parked per namespace", ({ env, namespaces, perNamespace }) => {
    const cfg = loadKubeGatewayConfig(env);
    expect(cfg.namespaces).toEqual(namespaces);
    expect(cfg.backend.namespace).toBe(namespaces[0]);
    expect(cfg.gateway.maxParkedPerNamespace).toBe(perNamespace);
  });

  it("FAAS_FUNCTION_NAMESPACES=* serves every namespace, the default one from FAAS_FUNCTION_NAMESPACE", () => {
    const all = loadKubeGatewayConfig({ FAAS_FUNCTION_NAMESPACES: "*" });
    expect({
      all: all.allNamespaces,
      namespaces: all.namespaces,
      perNamespace: all.gateway.maxParkedPerNamespace,
    }).toEqual({
      all: true,
      namespaces: ["default"],
      perNamespace: 5000,
    });
    const other = loadKubeGatewayConfig({ FAAS_FUNCTION_NAMESPACES: " * ", FAAS_FUNCTION_NAMESPACE: "fns" });
    expect(other.backend.namespace).toBe("fns");
    expect(loadKubeGatewayConfig({ FAAS_FUNCTION_NAMESPACES: "a,b" }).allNamespaces).toBe(false);
  });

  it.each([
    { list: "a,*", why: /"\*" is not a namespace name/ },
    { list: "a,A", why: /"A" is not a namespace name/ },
    { list: "a,a", why: /listed twice/ },
    { list: "-x", why: /not a namespace name/ },
    { list: "a/b", why: /not a namespace name/ },
  ])("refuses FAAS_FUNCTION_NAMESPACES=$list", ({ list, why }) => {
    expect(() => loadKubeGatewayConfig({ FAAS_FUNCTION_NAMESPACES: list })).toThrow(why);
  });
});
