export * from "./announcements.js";
export * from "./api-key-cache.js";
export * from "./config.js";
export * from "./kube-backend.js";
export * from "./namespaced-backend.js";
