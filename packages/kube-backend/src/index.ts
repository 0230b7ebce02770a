export * from "./config.js";
export * from "./kube-backend.js";
