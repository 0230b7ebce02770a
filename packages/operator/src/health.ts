/**
 * /healthz (the process serves) and /readyz (caches synced) for the operator's
 * pod probes, and /metrics (its API-server calls, among others) for Prometheus.
 */
import { createServer, type Server } from "node:http";
import type { Registry } from "prom-client";

export function startHealthServer(port: number, ready: () => boolean, registry?: Registry): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.url === "/metrics" && registry !== undefined) {
      registry.metrics().then(
        (text) => {
          res.writeHead(200, { "content-type": registry.contentType });
          res.end(text);
        },
        (err: unknown) => {
          res.writeHead(500, { "content-type": "text/plain" });
          res.end(String(err));
        },
      );
      return;
    }
    const ok = req.url === "/healthz" || (req.url === "/readyz" && ready());
    res.writeHead(ok ? 200 : 503, { "content-type": "application/json" });
    res.end(JSON.stringify({ status: ok ? "ok" : "not ready" }));
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "0.0.0.0", () => resolve(server));
  });
}
