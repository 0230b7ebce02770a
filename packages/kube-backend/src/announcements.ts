/**
 * Pods that say they are ready (ADR 0018). A function pod's address reaches the
 * API server only at the kubelet's next status sync — up to a second after the
 * runner listens — and its EndpointSlice later still. A runner given
 * FAAS_ANNOUNCE_URL POSTs `{namespace, pod, uid, ip, port, uptimeMs}` to the
 * gateways' announce port once its function is loaded; the gateway that gets it
 * passes it on to its peers (the other ready endpoints of its own Service), and
 * each gateway checks it on its own before routing to that address:
 *
 * - the pod must be in its pod watch with that name and UID (a UID is not
 *   guessable: function pods have no API access), not being deleted, and with no
 *   other address in its status;
 * - `GET /readyz` on the address must answer 200 with `x-faas-pod-uid` equal to
 *   that UID.
 *
 * Until both hold, nothing routes there. An announcement is a hint that saves
 * the wait; the EndpointSlice remains what routing follows once it has the pod.
 */
import { createServer, request, type Server } from "node:http";
import { isIP } from "node:net";
import { RUNNER_PORT } from "@faas/api";
import { type KubeClient, type KubeObject, RESOURCES, Reflector } from "@faas/kube";
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";

export interface Announcement {
  namespace: string;
  pod: string;
  uid: string;
  ip: string;
  port: number;
  /** Milliseconds since the runner's process started, when it announced. */
  uptimeMs: number;
}

/** What a gateway made of an announcement. */
export type AnnounceResult =
  | "accepted" // the pod is known: probed now if a cold start waits for it
  | "pending" // not in the pod watch yet: kept for a while, checked when it appears
  | "mismatch" // the watch knows that pod with another UID or address
  | "terminating"
  | "not-served"; // a namespace this gateway does not serve

export interface AnnouncementSink {
  announce(a: Announcement): AnnounceResult;
}

/** Header on an announcement one gateway passes on to another; it is not passed on again. */
export const RELAYED_HEADER = "x-faas-relayed";
const MAX_BODY_BYTES = 2048;
const RELAY_TIMEOUT_MS = 1000;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const UID = /^[0-9a-fA-F-]{1,64}$/;

/** Validates an announcement's body; throws an Error saying what is wrong. */
export function parseAnnouncement(value: unknown): Announcement {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error("must be a JSON object");
  const v = value as Record<string, unknown>;
  const str = (key: string, re: RegExp, max: number): string => {
    const s = v[key];
    if (typeof s !== "string" || s.length > max || !re.test(s)) throw new Error(`${key}: not a valid value`);
    return s;
  };
  const namespace = str("namespace", DNS_LABEL, 63);
  const pod = str("pod", DNS_SUBDOMAIN, 253);
  const uid = str("uid", UID, 64);
  const ip = v.ip;
  if (typeof ip !== "string" || isIP(ip) === 0) throw new Error("ip: not an IP address");
  if (v.port !== RUNNER_PORT) throw new Error(`port: runners listen on ${RUNNER_PORT}`);
  const uptimeMs = v.uptimeMs;
  if (typeof uptimeMs !== "number" || !Number.isFinite(uptimeMs) || uptimeMs < 0 || uptimeMs > 86_400_000) {
    throw new Error("uptimeMs: must be a number of milliseconds");
  }
  return { namespace, pod, uid, ip, port: RUNNER_PORT, uptimeMs };
}

interface EndpointSlice extends KubeObject {
  endpoints?: { addresses: string[]; conditions?: { ready?: boolean; terminating?: boolean } }[];
  ports?: { name?: string; port?: number }[] | null;
}

/** The other ready gateways, from the EndpointSlices of the gateway's own Service. */
export class GatewayPeers {
  readonly slices: Reflector<EndpointSlice>;

  constructor(
    client: KubeClient,
    namespace: string,
    service: string,
    private readonly portName: string,
    private readonly selfIp: string | undefined,
    log: Logger,
  ) {
    this.slices = new Reflector<EndpointSlice>(
      client,
      {
        resource: { ...RESOURCES.endpointslices, namespace },
        labelSelector: `kubernetes.io/service-name=${service}`,
      },
      log.child({ reflector: "gateway-peers" }),
    );
  }

  /** `host:port` of each ready peer. */
  list(): string[] {
    const out = new Set<string>();
    for (const s of this.slices.list()) {
      const port = s.ports?.find((p) => p.name === this.portName)?.port;
      if (port === undefined) continue;
      for (const e of s.endpoints ?? []) {
        if (e.conditions?.ready === false || e.conditions?.terminating === true) continue;
        for (const a of e.addresses) if (a !== this.selfIp) out.add(`${a.includes(":") ? `[${a}]` : a}:${port}`);
      }
    }
    return [...out];
  }

  start(): Promise<void> {
    return this.slices.start();
  }

  stop(): void {
    this.slices.stop();
  }
}

export interface AnnounceServerOptions {
  port: number;
  host?: string;
  sink: AnnouncementSink;
  /** Other gateways to pass announcements on to; none when undefined. */
  peers?: Pick<GatewayPeers, "list">;
  log: Logger;
}

/** `POST /announce` on its own port (not behind the invoke port, not open to the world: ADR 0018). */
export class AnnounceServer {
  readonly #server: Server;
  readonly announcements = new Counter({
    name: "faas_pod_announcements_total",
    help: "Announcements of ready function pods this gateway received, by what it made of them.",
    labelNames: ["result", "relayed"],
    registers: [],
  });
  readonly relays = new Counter({
    name: "faas_pod_announcement_relays_total",
    help: "Announcements passed on to other gateways, by outcome.",
    labelNames: ["outcome"],
    registers: [],
  });

  constructor(private readonly opts: AnnounceServerOptions) {
    this.#server = createServer({ headersTimeout: 2000, requestTimeout: 2000 }, (req, res) => {
      const reply = (status: number, body: Record<string, unknown>): void => {
        if (res.headersSent) return;
        res.writeHead(status, { "content-type": "application/json", connection: "close" });
        res.end(JSON.stringify(body));
      };
      if (req.url !== "/announce") {
        req.resume();
        return reply(404, { error: { code: "NOT_FOUND", message: "only POST /announce is served here" } });
      }
      if (req.method !== "POST") {
        req.resume();
        return reply(405, { error: { code: "METHOD_NOT_ALLOWED", message: "use POST" } });
      }
      const chunks: Buffer[] = [];
      let size = 0;
      req.on("data", (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY_BYTES) {
          reply(413, { error: { code: "PAYLOAD_TOO_LARGE", message: `at most ${MAX_BODY_BYTES} bytes` } });
          req.destroy();
          return;
        }
        chunks.push(c);
      });
      req.on("error", () => undefined);
      req.on("end", () => {
        if (size > MAX_BODY_BYTES) return;
        let a: Announcement;
        try {
          a = parseAnnouncement(JSON.parse(Buffer.concat(chunks).toString("utf8")));
        } catch (err) {
          this.announcements.inc({ result: "invalid", relayed: "false" });
          return reply(400, { error: { code: "BAD_REQUEST", message: `announcement: ${(err as Error).message}` } });
        }
        const relayed = req.headers[RELAYED_HEADER] !== undefined;
        // Passed on first: the peers check it on their own, in parallel with this one.
        if (!relayed) this.#relay(a);
        let result: AnnounceResult;
        try {
          result = opts.sink.announce(a);
        } catch (err) {
          opts.log.error({ err: (err as Error)?.stack ?? String(err) }, "announcement handling failed");
          return reply(500, { error: { code: "INTERNAL", message: "announcement not handled" } });
        }
        this.announcements.inc({ result, relayed: String(relayed) });
        // One line per pod start (and gateway): what came, and what this gateway made of it.
        if (relayed) opts.log.debug({ ...a, result, relayed }, "pod announced");
        else opts.log.info({ ...a, result }, "pod announced");
        reply(202, { result });
      });
    });
    this.#server.on("clientError", (_err, socket) => socket.destroy());
  }

  registerMetrics(registry: Registry): void {
    registry.registerMetric(this.announcements);
    registry.registerMetric(this.relays);
  }

  #relay(a: Announcement): void {
    const peers = this.opts.peers?.list() ?? [];
    const body = JSON.stringify(a);
    for (const peer of peers) {
      const req = request(
        `http://${peer}/announce`,
        {
          method: "POST",
          agent: false,
          timeout: RELAY_TIMEOUT_MS,
          headers: {
            "content-type": "application/json",
            "content-length": Buffer.byteLength(body),
            [RELAYED_HEADER]: "1",
          },
        },
        (res) => {
          res.resume();
          this.relays.inc({ outcome: res.statusCode === 202 ? "delivered" : "refused" });
        },
      );
      req.on("timeout", () => req.destroy(new Error("timeout")));
      req.on("error", (err) => {
        this.relays.inc({ outcome: "failed" });
        this.opts.log.debug({ peer, err: err.message }, "passing an announcement on failed");
      });
      req.end(body);
    }
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(this.opts.port, this.opts.host ?? "0.0.0.0", () => {
        this.#server.off("error", reject);
        const addr = this.#server.address();
        resolve(typeof addr === "object" && addr !== null ? addr.port : this.opts.port);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }
}
