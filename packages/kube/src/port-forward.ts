/**
 * A local port that forwards each TCP connection to a ready pod behind a label
 * selector, through the API server's `pods/portforward` (WebSocket,
 * `v4.channel.k8s.io`: channel 0 data, channel 1 errors, each opened by the
 * port number as two little-endian bytes).
 *
 * Unlike `kubectl port-forward svc/…`, which resolves the Service to one pod
 * once and dies with it, every new connection goes to a pod that is ready now:
 * the one used last while it stays ready, another one when it goes (a rollout,
 * a deleted pod). A connection open on a pod that dies breaks, as it would
 * through any proxy; the next one lands on a live pod.
 */
import { createServer, type Server, type Socket } from "node:net";
import { type KubeClient, KubeError, type KubeObject, RESOURCES, resourcePath } from "./kube-client.js";
import { WebSocketClient } from "./web-socket.js";

export const PORT_FORWARD_PROTOCOL = "v4.channel.k8s.io";

export interface PortForwardTarget {
  namespace: string;
  /** Label selector of the pods, e.g. `app.kubernetes.io/name=faas-gateway`. */
  selector: string;
  /** Port in the pod. */
  port: number;
}

interface PodLike extends KubeObject {
  status?: { phase?: string; conditions?: { type: string; status: string }[] };
}

/** Pods that are Ready and not being deleted, by name. */
export function readyPodNames(pods: readonly PodLike[]): string[] {
  return pods
    .filter(
      (p) =>
        !p.metadata.deletionTimestamp &&
        p.status?.phase === "Running" &&
        (p.status.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True"),
    )
    .map((p) => p.metadata.name)
    .sort();
}

/** The pod to use: the current one while it is still ready, else the first ready one. */
export function choosePod(ready: readonly string[], current: string | undefined): string | undefined {
  return current !== undefined && ready.includes(current) ? current : ready[0];
}

export class PortForwarder {
  #server: Server | undefined;
  #pod: string | undefined;
  readonly #sockets = new Set<Socket>();
  /** Pods a connection has been forwarded to, in order of first use. */
  readonly podsUsed: string[] = [];

  constructor(
    private readonly kube: KubeClient,
    private readonly target: PortForwardTarget,
    private readonly opts: { connectTimeoutMs?: number; onPod?: (pod: string) => void } = {},
  ) {}

  /** Listens on 127.0.0.1 (`localPort` 0 picks a free port); resolves with the port. */
  async start(localPort = 0): Promise<number> {
    // Fail here, not on the first connection, when no pod is ready at all.
    await this.#choose();
    const server = createServer((socket) => void this.#forward(socket));
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(localPort, "127.0.0.1", () => resolve());
    });
    return (server.address() as { port: number }).port;
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    const server = this.#server;
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  async #choose(): Promise<string> {
    const { items } = await this.kube.list<PodLike>(
      { ...RESOURCES.pods, namespace: this.target.namespace },
      { labelSelector: this.target.selector },
    );
    const pod = choosePod(readyPodNames(items), this.#pod);
    if (pod === undefined) {
      throw new KubeError(
        503,
        "NoReadyPod",
        `no ready pod with ${this.target.selector} in namespace ${this.target.namespace}`,
      );
    }
    if (pod !== this.#pod) {
      this.#pod = pod;
      if (!this.podsUsed.includes(pod)) this.podsUsed.push(pod);
      this.opts.onPod?.(pod);
    }
    return pod;
  }

  async #open(): Promise<WebSocketClient> {
    let lastError: unknown;
    // A pod chosen a moment ago may be gone by the time we connect: try again on a fresh choice.
    for (let attempt = 0; attempt < 3; attempt++) {
      const pod = await this.#choose();
      const path = `${resourcePath({ ...RESOURCES.pods, namespace: this.target.namespace, name: pod, subresource: "portforward" })}?ports=${this.target.port}`;
      try {
        return await WebSocketClient.connect(
          await this.kube.requestOptions("GET", path),
          [PORT_FORWARD_PROTOCOL],
          this.opts.connectTimeoutMs ?? 10_000,
        );
      } catch (err) {
        lastError = err;
        this.#pod = undefined;
      }
    }
    throw lastError;
  }

  async #forward(socket: Socket): Promise<void> {
    this.#sockets.add(socket);
    socket.once("close", () => this.#sockets.delete(socket));
    socket.pause();
    let ws: WebSocketClient;
    try {
      ws = await this.#open();
    } catch {
      socket.destroy();
      return;
    }
    // The first message of each channel is the port number; only then does data flow.
    const seenPort = [false, false];
    ws.on("message", (msg: Buffer) => {
      const channel = msg[0] as number;
      let data = msg.subarray(1);
      if (channel <= 1 && !seenPort[channel]) {
        seenPort[channel] = true;
        data = data.subarray(2);
      }
      if (data.length === 0) return;
      if (channel === 0) {
        if (!socket.write(data)) {
          ws.pause();
          socket.once("drain", () => ws.resume());
        }
      } else if (channel === 1) {
        // The kubelet could not reach the port (the pod is going): drop it, so the next connection moves on.
        this.#pod = undefined;
        socket.destroy(new Error(data.toString("utf8")));
      }
    });
    ws.on("close", (err?: Error) => {
      if (err) this.#pod = undefined;
      socket.end();
    });
    socket.on("data", (chunk: Buffer) => {
      if (!ws.send(Buffer.concat([Buffer.from([0]), chunk]))) {
        socket.pause();
        ws.onDrain(() => socket.resume());
      }
    });
    socket.on("end", () => ws.close());
    socket.on("error", () => ws.close());
    socket.on("close", () => ws.close());
    socket.resume();
  }
}
