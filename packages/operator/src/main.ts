#!/usr/bin/env node
/**
 * The operator binary: `node packages/operator/dist/main.js [--namespace NS |
 * --all-namespaces] [--leader-elect] [--kubeconfig FILE]`.
 */
import { pino } from "pino";
import { loadConfig } from "./config.js";
import { runOperator } from "./index.js";

const config = loadConfig(process.env, process.argv.slice(2));
const log = pino({ name: "faas-operator", level: config.logLevel }, process.stderr);
try {
  await runOperator(config, log);
} catch (err) {
  log.fatal({ err }, "operator failed");
  process.exitCode = 1;
}
