export * from "./function-store.js";
export * from "./local-backend.js";
export * from "./log-store.js";
export * from "./platform.js";
export * from "./runner-commands.js";
export * from "./runner-process.js";
export * from "./scale-policy.js";
export * from "./warm-pool.js";
