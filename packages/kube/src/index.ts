export * from "./api-keys-secret.js";
export * from "./crd.js";
export * from "./kube-client.js";
export * from "./kube-metrics.js";
export * from "./leader-election.js";
export * from "./port-forward.js";
export * from "./reflector.js";
export * from "./web-socket.js";
