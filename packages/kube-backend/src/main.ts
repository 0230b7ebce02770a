#!/usr/bin/env node
/** The gateway on Kubernetes: `node packages/kube-backend/dist/main.js`. */
import { createLogger, Gateway } from "@faas/gateway";
import { KubeClient } from "@faas/kube";
import { AnnounceServer, GatewayPeers } from "./announcements.js";
import { loadKubeGatewayConfig } from "./config.js";
import { KubeBackend } from "./kube-backend.js";
import { NamespacedBackend } from "./namespaced-backend.js";

const cfg = loadKubeGatewayConfig(process.env);
const log = createLogger(cfg.gateway.logLevel, "faas-gateway", process.stdout);
const client = KubeClient.load({ kubeconfig: cfg.kubeconfig });
const backendFor = (namespace: string): KubeBackend =>
  new KubeBackend(client, { ...cfg.backend, namespace }, log.child({ component: "kube-backend", namespace }));
// One namespace: its backend as it is; several (or all): one each, under one key space (`<namespace>/<name>`).
const backend =
  cfg.namespaces.length === 1 && !cfg.allNamespaces
    ? backendFor(cfg.backend.namespace)
    : new NamespacedBackend(client, {
        defaultNamespace: cfg.backend.namespace,
        namespaces: cfg.allNamespaces ? "*" : cfg.namespaces,
        backendFor,
        log: log.child({ component: "namespaces" }),
      });
const gateway = new Gateway(cfg.gateway, backend, log);

// Function pods say when they are ready (ADR 0018); announcements are passed on to the other gateways.
const peers =
  cfg.announce.port > 0
    ? new GatewayPeers(
        client,
        cfg.announce.namespace,
        cfg.announce.service,
        "announce",
        cfg.announce.selfIp,
        log.child({ component: "gateway-peers" }),
      )
    : undefined;
const announcer =
  cfg.announce.port > 0
    ? new AnnounceServer({
        port: cfg.announce.port,
        host: cfg.gateway.host,
        sink: backend,
        peers,
        log: log.child({ component: "announce" }),
      })
    : undefined;
announcer?.registerMetrics(gateway.activator.metrics.registry);

let stopping = false;
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    if (stopping) process.exit(130);
    stopping = true;
    log.info({ signal }, "stopping: finishing in-flight requests");
    peers?.stop();
    Promise.all([gateway.stop(), announcer?.close()]).then(
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
if (announcer !== undefined) {
  announcer.listen().then(
    (port) => log.info({ port }, "announce port listening"),
    (err: unknown) => {
      log.fatal({ err: String(err) }, "announce port failed to listen");
      process.exit(1);
    },
  );
  // Not awaited: without access to its own Service's EndpointSlices a gateway still takes announcements itself.
  peers?.start().catch((err: unknown) => log.warn({ err: String(err) }, "gateway peers unknown"));
}
