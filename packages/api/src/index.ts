export * from "./api-keys.js";
export * from "./errors.js";
export * from "./function-spec.js";
export * from "./load-spec.js";
export * from "./manifest.js";
export * from "./names.js";
export * from "./quantity.js";
export * from "./references.js";
