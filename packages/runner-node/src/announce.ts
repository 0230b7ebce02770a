/**
 * Tells the gateways that this pod is ready (docs/runner-protocol.md, "Announcing a pod").
 *
 * A Kubernetes function pod's address reaches the API server only at the
 * kubelet's next status sync, up to a second after the runner listens. With
 * FAAS_ANNOUNCE_URL set, the runner POSTs `{namespace, pod, uid, ip, port,
 * uptimeMs}` there once it is ready; a gateway checks the pod against its own
 * watch (name and UID), probes `/readyz` on that address and routes to it at
 * once. Best effort: a few attempts, short deadlines, never fatal.
 */
import { request } from "node:http";
import type { RunnerConfig } from "./config.js";
import type { Logger } from "./log.js";

const ATTEMPTS = 3;
const TIMEOUT_MS = 1000;
const RETRY_MS = [100, 400];

export interface Announcement {
  namespace: string;
  pod: string;
  uid: string;
  ip: string;
  port: number;
  /** Milliseconds since this process started. */
  uptimeMs: number;
}

/** The body to send, or undefined when this runner has nothing (or nowhere) to announce. */
export function announcement(config: RunnerConfig, port: number): Announcement | undefined {
  const { namespace, name, uid, ip } = config.pod;
  if (!config.announceUrl || !namespace || !name || !uid || !ip) return undefined;
  return { namespace, pod: name, uid, ip, port, uptimeMs: Math.round(performance.now() * 10) / 10 };
}

/** POSTs `body` to `url`; true once a gateway accepted it (2xx). */
export async function announce(url: string, body: Announcement, log: Logger): Promise<boolean> {
  const payload = JSON.stringify(body);
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    try {
      const status = await post(url, payload);
      if (status >= 200 && status < 300) {
        log.info("announced", { url, attempt: attempt + 1 });
        return true;
      }
      log.info("announce-refused", { url, status });
      // The gateway will not take it: asking again changes nothing.
      if (status >= 400 && status < 500) return false;
    } catch (err) {
      log.info("announce-failed", { url, attempt: attempt + 1, error: (err as Error).message });
    }
    const wait = RETRY_MS[attempt];
    if (wait !== undefined) await new Promise((r) => setTimeout(r, wait).unref());
  }
  return false;
}

function post(url: string, payload: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: "POST",
        agent: false,
        timeout: TIMEOUT_MS,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(payload) },
      },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
    req.on("error", reject);
    req.end(payload);
  });
}
