/** /healthz (the process serves) and /readyz (caches synced) for the operator's pod probes. */
import { createServer, type Server } from "node:http";

export function startHealthServer(port: number, ready: () => boolean): Promise<Server> {
  const server = createServer((req, res) => {
    const ok = req.url === "/healthz" || (req.url === "/readyz" && ready());
    res.writeHead(ok ? 200 : 503, { "content-type": "application/json" });
    res.end(JSON.stringify({ status: ok ? "ok" : "not ready" }));
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "0.0.0.0", () => resolve(server));
  });
}
