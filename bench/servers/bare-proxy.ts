/**
 * The cheapest HTTP proxy Node can be, as the yardstick for the gateway: a
 * keep-alive Agent, the request piped up and the response piped back, nothing
 * else (no routing, no limits, no metrics). Usage: bare-proxy <upstream-port>.
 */
import { Agent, createServer, request } from "node:http";
import type { AddressInfo } from "node:net";

const upstreamPort = Number(process.argv[2]);
const agent = new Agent({ keepAlive: true, maxSockets: 1024, maxFreeSockets: 256, scheduling: "lifo" });

const server = createServer({ keepAliveTimeout: 5_000 }, (req, res) => {
  const upstream = request(
    { host: "127.0.0.1", port: upstreamPort, method: req.method, path: req.url, headers: req.headers, agent },
    (ures) => {
      res.writeHead(ures.statusCode ?? 502, ures.headers);
      ures.pipe(res);
    },
  );
  upstream.on("error", () => {
    if (!res.headersSent) res.writeHead(502);
    res.end();
  });
  req.pipe(upstream);
});

server.listen(0, "127.0.0.1", () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`${JSON.stringify({ event: "listening", port, pid: process.pid })}\n`);
});
process.on("SIGTERM", () => process.exit(0));
