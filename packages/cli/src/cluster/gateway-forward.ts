/**
 * The gateway of a cluster, for `faas invoke`: `--gateway URL` when given,
 * otherwise a port-forward of our own to a ready gateway pod, which moves to
 * another ready pod when its pod goes (unlike `kubectl port-forward svc/…`).
 */
import { GATEWAY_PORT, GATEWAY_SERVICE, SYSTEM_NAMESPACE } from "@faas/api";
import { PortForwarder } from "@faas/kube";
import { type ClusterTarget, connectCluster } from "../cluster-context.js";
import type { CliConfig } from "../config.js";
import type { CommandContext } from "../context.js";
import { CliError, EXIT } from "../exit-codes.js";
import { GatewayClient } from "../gateway-client.js";
import { GATEWAY_SELECTOR, invokePath } from "./gateway-figures.js";

export interface ClusterGateway {
  client: GatewayClient;
  /** Where the function is on the gateway: `/invoke/<name>`, or `/invoke/<namespace>/<name>` (ADR 0015). */
  invokePath(name: string): string;
  /** The gateway pods connections went to (empty with --gateway). */
  pods: readonly string[];
  close(): Promise<void>;
}

export async function clusterGateway(cfg: CliConfig, target: ClusterTarget): Promise<ClusterGateway> {
  const resolveAt = (url: string): Promise<GatewayClient> =>
    GatewayClient.resolve({ dataDir: cfg.dataDir, urlOverride: url, token: undefined, defaultUrl: url });
  const conn = await connectCluster(target);
  const path = (name: string): string => invokePath(conn.namespace, name);
  if (cfg.gatewayUrl !== undefined) {
    return { client: await resolveAt(cfg.gatewayUrl), invokePath: path, pods: [], close: async () => {} };
  }
  const forwarder = new PortForwarder(conn.kube, {
    namespace: SYSTEM_NAMESPACE,
    selector: GATEWAY_SELECTOR,
    port: GATEWAY_PORT,
  });
  let port: number;
  try {
    port = await forwarder.start();
  } catch (err) {
    throw new CliError(
      EXIT.UNAVAILABLE,
      `cannot reach the gateway (${conn.where}): ${(err as Error).message}`,
      "is the gateway installed and ready? (kubectl apply -f gateway-deploy.yaml); or pass --gateway URL",
      { cause: err },
    );
  }
  return {
    client: await resolveAt(`http://127.0.0.1:${port}`),
    invokePath: path,
    pods: forwarder.podsUsed,
    close: () => forwarder.close(),
  };
}

/**
 * `faas port-forward`: the gateway on 127.0.0.1:<port> until Ctrl-C, each
 * connection to a pod that is ready at that moment — what
 * `kubectl port-forward svc/faas-gateway` does, without dying with its pod.
 */
export async function runPortForward(
  ctx: CommandContext,
  target: ClusterTarget,
  opts: { port: number; address?: string },
): Promise<number> {
  const { ui } = ctx;
  const conn = await connectCluster(target);
  const forwarder = new PortForwarder(
    conn.kube,
    { namespace: SYSTEM_NAMESPACE, selector: GATEWAY_SELECTOR, port: GATEWAY_PORT },
    { onPod: (pod) => ui.note(ui.ce.dim(`forwarding to pod ${pod}`)) },
  );
  let port: number;
  try {
    port = await forwarder.start(opts.port);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new CliError(
      EXIT.UNAVAILABLE,
      e.code === "EADDRINUSE"
        ? `port ${opts.port} is taken on 127.0.0.1`
        : `cannot reach the gateway (${conn.where}): ${e.message}`,
      e.code === "EADDRINUSE" ? "pick another with --port, or 0 for a free one" : "is the gateway installed and ready?",
      { cause: err },
    );
  }
  ui.out(`Forwarding from 127.0.0.1:${port} -> ${SYSTEM_NAMESPACE}/${GATEWAY_SERVICE}:${GATEWAY_PORT} (Ctrl-C stops)`);
  return new Promise<number>((resolve) => {
    ctx.onInterrupt = () => {
      void forwarder.close().then(() => resolve(EXIT.OK));
    };
  });
}
