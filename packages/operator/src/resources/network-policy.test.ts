import { FUNCTION_LABEL, POOL_LABEL } from "@faas/api";
import { describe, expect, it } from "vitest";
import { DEFAULT_OPERATOR_CONFIG } from "../config.js";
import { buildNetworkPolicies } from "./network-policy.js";

/** Label-selector semantics of the API server (matchLabels and Exists/In only, as used here). */
function selects(
  sel: {
    matchLabels?: Record<string, string>;
    matchExpressions?: { key: string; operator: string; values?: string[] }[];
  },
  labels: Record<string, string>,
): boolean {
  const byLabels = Object.entries(sel.matchLabels ?? {}).every(([k, v]) => labels[k] === v);
  const byExpr = (sel.matchExpressions ?? []).every((e) =>
    e.operator === "Exists"
      ? e.key in labels
      : e.operator === "In"
        ? (e.values ?? []).includes(labels[e.key] ?? "")
        : false,
  );
  return byLabels && byExpr;
}

const gatewayPod = { "app.kubernetes.io/name": "faas-gateway", "faas.example.com/component": "gateway" };
const nsLabels = (name: string) => ({ "kubernetes.io/metadata.name": name });

describe("buildNetworkPolicies", () => {
  const policies = buildNetworkPolicies("team-a", DEFAULT_OPERATOR_CONFIG);

  it("one policy for function pods, one for pool pods, in the namespace served, marked as ours", () => {
    expect(policies.map((p) => [p.metadata?.name, p.metadata?.namespace])).toEqual([
      ["faas-functions-ingress", "team-a"],
      ["faas-pool-ingress", "team-a"],
    ]);
    for (const p of policies) {
      expect(p.apiVersion).toBe("networking.k8s.io/v1");
      expect(p.kind).toBe("NetworkPolicy");
      expect(p.metadata?.labels).toEqual({ "app.kubernetes.io/managed-by": "faas-operator" });
      expect(p.spec?.policyTypes).toEqual(["Ingress"]);
    }
  });

  const pods: { name: string; labels: Record<string, string>; want: string[] }[] = [
    {
      name: "a function pod",
      labels: { [FUNCTION_LABEL]: "hello", "app.kubernetes.io/managed-by": "faas-operator" },
      want: ["faas-functions-ingress"],
    },
    {
      name: "an idle pool pod",
      labels: { [POOL_LABEL]: "python", "faas.example.com/pool-state": "idle" },
      want: ["faas-pool-ingress"],
    },
    {
      name: "a claimed pool pod",
      labels: { [POOL_LABEL]: "nodejs", "faas.example.com/pool-state": "claimed", "faas.example.com/claimed-for": "x" },
      want: ["faas-pool-ingress"],
    },
    { name: "any other pod", labels: { app: "db" }, want: [] },
    { name: "a pod with no labels", labels: {}, want: [] },
  ];
  for (const c of pods) {
    it(`selects ${c.name}: ${c.want.join(", ") || "none"}`, () => {
      const got = policies.filter((p) => selects(p.spec?.podSelector ?? {}, c.labels)).map((p) => p.metadata?.name);
      expect(got).toEqual(c.want);
    });
  }

  const peers: { name: string; ns: Record<string, string>; pod: Record<string, string>; allowed: boolean }[] = [
    { name: "a gateway pod in faas-system", ns: nsLabels("faas-system"), pod: gatewayPod, allowed: true },
    { name: "a gateway-labelled pod elsewhere", ns: nsLabels("team-a"), pod: gatewayPod, allowed: false },
    { name: "another pod in faas-system", ns: nsLabels("faas-system"), pod: { app: "x" }, allowed: false },
    {
      name: "a function pod in the same namespace",
      ns: nsLabels("team-a"),
      pod: { [FUNCTION_LABEL]: "f" },
      allowed: false,
    },
  ];
  for (const c of peers) {
    it(`ingress from ${c.name}: ${c.allowed ? "allowed" : "not allowed"}`, () => {
      for (const p of policies) {
        const rules = p.spec?.ingress ?? [];
        expect(rules).toHaveLength(1);
        const allowed = (rules[0]?.from ?? []).some(
          (peer) =>
            peer.namespaceSelector !== undefined &&
            peer.podSelector !== undefined &&
            selects(peer.namespaceSelector, c.ns) &&
            selects(peer.podSelector, c.pod),
        );
        expect(allowed).toBe(c.allowed);
      }
    });
  }

  it("only on the runner port, TCP", () => {
    for (const p of policies) expect(p.spec?.ingress?.[0]?.ports).toEqual([{ protocol: "TCP", port: 8080 }]);
  });

  it("follows the gateway's namespace when it is elsewhere", () => {
    const [p] = buildNetworkPolicies("ns1", { gatewayNamespace: "gw" });
    expect(p?.spec?.ingress?.[0]?.from?.[0]?.namespaceSelector).toEqual({
      matchLabels: { "kubernetes.io/metadata.name": "gw" },
    });
  });
});
