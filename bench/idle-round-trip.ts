/**
 * The floor under a cold start on this machine: one HTTP round trip on a
 * kept-alive loopback connection between two plain `node:http` processes (no
 * faas code), back to back and after the processes sat idle for a while. A cold
 * sample starts from idle processes (the benchmark lets the pool settle first),
 * so every hop of it pays the idle figure, not the busy one.
 *
 *   npm run bench:idle        # or: node bench/dist/idle-round-trip.js [samples]
 */
import { spawn } from "node:child_process";
import { Agent, request } from "node:http";
import { median, ms, quantile, table } from "./lib/stats.js";

const SERVER = `require("node:http").createServer((q, s) => s.end("ok")).listen(0, "127.0.0.1", function () { console.log(this.address().port); })`;
const IDLE_MS = [0, 1, 10, 100, 500];

const samples = Number(process.argv[2] ?? 30);
const server = spawn(process.execPath, ["-e", SERVER], { stdio: ["ignore", "pipe", "ignore"] });
try {
  const port = await new Promise<number>((resolve, reject) => {
    server.stdout.once("data", (d: Buffer) => resolve(Number(String(d).trim())));
    server.once("exit", (code) => reject(new Error(`server exited with ${code}`)));
  });
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const roundTrip = (): Promise<number> =>
    new Promise((resolve, reject) => {
      const t = performance.now();
      const req = request({ host: "127.0.0.1", port, path: "/", agent }, (res) => {
        res.resume();
        res.on("end", () => resolve(performance.now() - t));
      });
      req.on("error", reject);
      req.end();
    });
  for (let i = 0; i < 50; i++) await roundTrip();
  const rows: string[][] = [];
  for (const idleMs of IDLE_MS) {
    const times: number[] = [];
    for (let i = 0; i < samples; i++) {
      if (idleMs > 0) await new Promise((r) => setTimeout(r, idleMs));
      times.push(await roundTrip());
    }
    rows.push([String(idleMs), String(samples), ms(median(times)), ms(quantile(times, 0.9))]);
  }
  agent.destroy();
  const { loadavg } = await import("node:os");
  console.log(
    `loopback keep-alive round trip, plain node:http, load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")}`,
  );
  console.log(table(["idle before (ms)", "n", "p50 ms", "p90 ms"], rows));
} finally {
  server.kill("SIGKILL");
}
