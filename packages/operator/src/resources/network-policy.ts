/**
 * Network isolation of the pods that run function code (ADR 0012): in every
 * namespace the operator serves, one NetworkPolicy for function pods and one
 * for warm-pool pods (a selector cannot say "this label or that one"). Each
 * admits ingress only from the gateway's pods, on the runner port. Traffic
 * from the node itself (kubelet probes, the API server's proxy, a gateway run
 * as a host process) is not subject to NetworkPolicies on the cluster's engine
 * (kube-router accepts what the node sends to its own pods).
 */
import { FUNCTION_LABEL, POOL_LABEL, RUNNER_PORT } from "@faas/api";
import type { V1LabelSelector, V1ObjectMeta } from "@kubernetes/client-node";
import type { OperatorConfig } from "../config.js";
import { MANAGED_BY, MANAGED_BY_LABEL } from "./labels.js";

/** The gateway Deployment's pod label (gateway-deploy.yaml). */
export const GATEWAY_POD_LABELS: Readonly<Record<string, string>> = { "app.kubernetes.io/name": "faas-gateway" };
/** Set by the API server on every namespace since Kubernetes 1.22. */
export const NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name";

export type NetworkPolicyConfig = Pick<OperatorConfig, "gatewayNamespace">;

/**
 * networking.k8s.io/v1 NetworkPolicy as it goes over the wire: the client
 * library's model names the peer list `_from` (serialized as `from` by its own
 * serializer only), and this operator sends plain JSON.
 */
export interface NetworkPolicyObject {
  apiVersion: "networking.k8s.io/v1";
  kind: "NetworkPolicy";
  metadata: V1ObjectMeta & { name: string; namespace: string };
  spec: {
    podSelector: V1LabelSelector;
    policyTypes: ("Ingress" | "Egress")[];
    ingress: {
      from: { namespaceSelector?: V1LabelSelector; podSelector?: V1LabelSelector }[];
      ports: { protocol: "TCP" | "UDP" | "SCTP"; port: number }[];
    }[];
  };
}

/** The policies of one namespace, by name, and the pod label each one selects on (any value). */
export const ISOLATED_PODS = [
  { name: "faas-functions-ingress", podLabel: FUNCTION_LABEL },
  { name: "faas-pool-ingress", podLabel: POOL_LABEL },
] as const;

export function buildNetworkPolicies(namespace: string, cfg: NetworkPolicyConfig): NetworkPolicyObject[] {
  return ISOLATED_PODS.map(
    ({ name, podLabel }): NetworkPolicyObject => ({
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: { name, namespace, labels: { [MANAGED_BY_LABEL]: MANAGED_BY } },
      spec: {
        podSelector: { matchExpressions: [{ key: podLabel, operator: "Exists" }] },
        policyTypes: ["Ingress"],
        ingress: [
          {
            from: [
              {
                // Both selectors in one peer: gateway pods in the gateway's namespace, nothing else.
                namespaceSelector: { matchLabels: { [NAMESPACE_NAME_LABEL]: cfg.gatewayNamespace } },
                podSelector: { matchLabels: { ...GATEWAY_POD_LABELS } },
              },
            ],
            ports: [{ protocol: "TCP", port: RUNNER_PORT }],
          },
        ],
      },
    }),
  );
}
