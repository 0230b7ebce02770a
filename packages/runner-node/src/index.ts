/** The Node.js runner as a library (tests, embedding); the process entry is main.ts. */
export { loadConfig, type RunnerConfig } from "./config.js";
export { RUNNER_ERROR_STATUS, RunnerError, type RunnerErrorCode } from "./errors.js";
export { FunctionHost } from "./function-host.js";
export { type LoadSpec, parseLoadSpec, readCodeDir } from "./load-spec.js";
export { RunnerServer } from "./runner-server.js";
