#!/usr/bin/env node
/** The gateway on Kubernetes: `node packages/kube-backend/dist/main.js`. */
import { createLogger, Gateway } from "@faas/gateway";
import { KubeClient } from "@faas/kube";
import { loadKubeGatewayConfig } from "./config.js";
import { KubeBackend } from "./kube-backend.js";

const cfg = loadKubeGatewayConfig(process.env);
const log = createLogger(cfg.gateway.logLevel, "faas-gateway", process.stdout);
const client = KubeClient.load({ kubeconfig: cfg.kubeconfig });
const gateway = new Gateway(
  cfg.gateway,
  new KubeBackend(client, cfg.backend, log.child({ component: "kube-backend" })),
  log,
);

let stopping = false;
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    if (stopping) process.exit(130);
    stopping = true;
    log.info({ signal }, "stopping: finishing in-flight requests");
    gateway.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err: String(err) }, "unclean stop");
        process.exit(1);
      },
    );
  });
}

gateway.start().catch((err: unknown) => {
  log.fatal({ err: String(err) }, "gateway failed to start");
  process.exit(1);
});
