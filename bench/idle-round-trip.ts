/**
 * The floor under a cold start on this machine: one HTTP round trip on a
 * kept-alive loopback connection between two plain `node:http` processes (no
 * faas code), back to back and after the processes sat idle for a while. A cold
 * sample starts from idle processes (the benchmark lets the pool settle first),
 * so every hop of it pays the idle figure, not the busy one.
 *
 * A second table times the memory side alone: reading one byte from each of
 * 1024 pages, back to back and after the process slept.
 *
 *   npm run bench:idle        # or: node bench/dist/idle-round-trip.js [samples] [--busy-cores]
 *
 * `--busy-cores` runs one spinning process per core at the lowest priority
 * (nice 19) meanwhile, so no vCPU ever halts: what is left of the idle cost
 * then does not come from waking a halted CPU.
 */
import { spawn } from "node:child_process";
import { Agent, request } from "node:http";
import { cpus, loadavg, setPriority } from "node:os";
import { median, ms, quantile, table } from "./lib/stats.js";

const SERVER = `require("node:http").createServer((q, s) => s.end("ok")).listen(0, "127.0.0.1", function () { console.log(this.address().port); })`;
const IDLE_MS = [0, 1, 10, 100, 500];

const args = process.argv.slice(2);
const busyCores = args.includes("--busy-cores");
const samples = Number(args.find((a) => !a.startsWith("--")) ?? 30);

/**
 * What idling costs without any HTTP: one byte read from each of 1024 distinct
 * 4 KiB pages (4 MiB written once, so every page is mapped), back to back and
 * after this process slept. The loop is a few instructions; what grows with the
 * idle time is the memory system's state (caches, TLB) on resuming.
 */
function pageTouch(n: number): string {
  const PAGE = 4096;
  const PAGES = 1024;
  const memory = new Uint8Array(PAGE * PAGES).fill(1);
  const touch = (): number => {
    const t = performance.now();
    let sum = 0;
    for (let i = 0; i < memory.length; i += PAGE) sum += memory[i] as number;
    const elapsed = performance.now() - t;
    if (sum !== PAGES) throw new Error("page touch read the wrong bytes");
    return elapsed;
  };
  for (let i = 0; i < 50; i++) touch();
  const rows: string[][] = [];
  for (const idleMs of IDLE_MS) {
    const times: number[] = [];
    for (let i = 0; i < n; i++) {
      if (idleMs > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, idleMs);
      times.push(touch());
    }
    rows.push([String(idleMs), String(n), median(times).toFixed(3), quantile(times, 0.9).toFixed(3)]);
  }
  return `one byte from each of ${PAGES} pages (4 MiB), after this process slept\n${table(
    ["idle before (ms)", "n", "p50 ms", "p90 ms"],
    rows,
  )}`;
}
const spinners = busyCores
  ? cpus().map(() => {
      const child = spawn(process.execPath, ["-e", "for (;;) {}"], { stdio: "ignore" });
      if (child.pid !== undefined) setPriority(child.pid, 19);
      return child;
    })
  : [];
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
  console.log(
    `loopback keep-alive round trip, plain node:http${busyCores ? `, ${spinners.length} spinners at nice 19` : ""}, load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")}`,
  );
  console.log(table(["idle before (ms)", "n", "p50 ms", "p90 ms"], rows));
  console.log();
  console.log(pageTouch(samples));
} finally {
  server.kill("SIGKILL");
  for (const spinner of spinners) spinner.kill("SIGKILL");
}
