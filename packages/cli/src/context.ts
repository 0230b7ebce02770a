/** What every command gets: the resolved config, the terminal, and a way to reach the gateway. */
import type { CliConfig } from "./config.js";
import { GatewayClient } from "./gateway-client.js";
import type { Ui } from "./ui.js";

export interface GlobalOptions {
  dataDir?: string;
  gateway?: string;
  context?: string;
  kubeconfig?: string;
  namespace?: string;
}

export interface CommandContext {
  cfg: CliConfig;
  ui: Ui;
  /** Set by `up`, so Ctrl-C stops the platform instead of the process. */
  onInterrupt?: () => void;
}

/** Applies --data-dir / --gateway on top of the environment's config. */
export function withGlobals(cfg: CliConfig, globals: GlobalOptions): CliConfig {
  return {
    ...cfg,
    dataDir: globals.dataDir ?? cfg.dataDir,
    gatewayUrl: globals.gateway ?? cfg.gatewayUrl,
    cluster: {
      context: globals.context ?? cfg.cluster.context,
      kubeconfig: globals.kubeconfig ?? cfg.cluster.kubeconfig,
      namespace: globals.namespace ?? cfg.cluster.namespace,
    },
  };
}

export function gatewayClient(cfg: CliConfig): Promise<GatewayClient> {
  const host = cfg.gateway.host === "0.0.0.0" || cfg.gateway.host === "::" ? "127.0.0.1" : cfg.gateway.host;
  return GatewayClient.resolve({
    dataDir: cfg.dataDir,
    urlOverride: cfg.gatewayUrl,
    token: cfg.adminToken,
    defaultUrl: `http://${host.includes(":") ? `[${host}]` : host}:${cfg.gateway.port}`,
  });
}
