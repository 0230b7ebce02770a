import { parseFunction } from "@faas/api";
import { describe, expect, it } from "vitest";
import { buildReferenceBinding, buildReferenceRole, envReferences, REFERENCE_ROLE } from "./reference-access.js";

const spec = (extra: Record<string, unknown>) =>
  parseFunction({
    apiVersion: "faas.example.com/v1",
    kind: "Function",
    metadata: { name: "f" },
    spec: { runtime: "python", code: "def handle(r): pass", ...extra },
  }).spec;

describe("the gateway's access to what functions take env from", () => {
  it("names each Secret and ConfigMap of env and envFrom once, sorted; mounts and literals grant nothing", () => {
    const refs = envReferences([
      spec({
        env: [
          { name: "A", value: "x" },
          { name: "P", valueFrom: { secretKeyRef: { name: "db", key: "password" } } },
          { name: "M", valueFrom: { configMapKeyRef: { name: "settings", key: "mode" } } },
        ],
        secrets: [{ name: "tls", mountPath: "/etc/tls" }],
      }),
      spec({
        envFrom: [
          { secretRef: { name: "api" } },
          { configMapRef: { name: "settings" } },
          { secretRef: { name: "db" } },
        ],
      }),
    ]);
    expect(refs).toEqual({ secrets: ["api", "db"], configMaps: ["settings"] });
  });

  it("a Role of `get` by name only, and none at all when nothing is referenced (empty resourceNames would mean all)", () => {
    expect(buildReferenceRole("team", { secrets: [], configMaps: [] })).toBeUndefined();
    expect(buildReferenceRole("team", { secrets: ["db"], configMaps: [] })).toMatchObject({
      kind: "Role",
      metadata: { name: REFERENCE_ROLE, namespace: "team" },
      rules: [{ apiGroups: [""], resources: ["secrets"], resourceNames: ["db"], verbs: ["get"] }],
    });
    const both = buildReferenceRole("team", { secrets: ["db"], configMaps: ["settings"] }) as { rules: unknown[] };
    expect(both.rules).toEqual([
      { apiGroups: [""], resources: ["secrets"], resourceNames: ["db"], verbs: ["get"] },
      { apiGroups: [""], resources: ["configmaps"], resourceNames: ["settings"], verbs: ["get"] },
    ]);
    expect(buildReferenceBinding("team", { namespace: "faas-system", serviceAccount: "faas-gateway" })).toMatchObject({
      kind: "RoleBinding",
      metadata: { name: REFERENCE_ROLE, namespace: "team" },
      roleRef: { kind: "Role", name: REFERENCE_ROLE },
      subjects: [{ kind: "ServiceAccount", name: "faas-gateway", namespace: "faas-system" }],
    });
  });
});
