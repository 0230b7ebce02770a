/**
 * nginx (the Debian package) as the reference proxy: a minimal generated
 * config in a temp directory, one worker (the Node proxies are one process
 * too), upstream keep-alive, no access log; run in the foreground with its own
 * pid file and stopped by PID.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { findExecutable } from "./executables.js";
import type { Resources, Server } from "./processes.js";

export async function startNginx(r: Resources, upstreamPort: number): Promise<Server | string> {
  const bin = await findExecutable("nginx");
  if (bin === undefined) return "nginx is not installed (Debian: apt-get install nginx-light)";
  const dir = await r.tempDir("nginx");
  await mkdir(join(dir, "tmp"));
  const port = await freePort();
  const conf = join(dir, "nginx.conf");
  await writeFile(
    conf,
    `daemon off;
worker_processes 1;
pid ${join(dir, "nginx.pid")};
error_log ${join(dir, "error.log")} warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${join(dir, "tmp")};
  proxy_temp_path ${join(dir, "tmp")};
  fastcgi_temp_path ${join(dir, "tmp")};
  uwsgi_temp_path ${join(dir, "tmp")};
  scgi_temp_path ${join(dir, "tmp")};
  keepalive_requests 1000000;
  upstream runner {
    server 127.0.0.1:${upstreamPort};
    keepalive 256;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://runner;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`,
  );
  // nginx prints nothing when it is up: it is ready once its port answers.
  const server = await r.startServer("nginx", bin, ["-p", dir, "-c", conf, "-e", join(dir, "error.log")], {
    listenPort: port,
    startTimeoutMs: 10_000,
  });
  return server;
}

/** A port that was free a moment ago (nginx needs a number, not 0). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      const port = typeof addr === "object" && addr !== null ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}
