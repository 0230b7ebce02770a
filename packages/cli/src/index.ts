export * from "./config.js";
export * from "./exit-codes.js";
export * from "./gateway-client.js";
export { buildProgram } from "./program.js";
