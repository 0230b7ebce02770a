/**
 * A test host for fake pods: EndpointSlices refuse loopback addresses, and
 * tests send traffic only to loopback or to hosts in network namespaces they
 * made. So each fake runner is a small HTTP server started inside a network
 * namespace of its own (`ip netns`), joined to this machine by a veth pair with
 * a /30 in 10.254.0.0/16; the namespace (and with it the veth pair) is deleted
 * when the runner closes or the process exits. Needs root and iproute2.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomInt } from "node:crypto";

const SERVER = `
const http = require("node:http");
const extra = JSON.parse(process.argv[3] || "{}");
let served = 0;
const server = http.createServer((req, res) => {
  served++;
  req.resume();
  res.writeHead(200, { "content-type": "text/plain", "x-pod": process.argv[1], ...extra });
  res.end("pod:" + req.url);
});
server.listen(Number(process.argv[2] || 0), process.argv[1], () => process.stdout.write(JSON.stringify({ port: server.address().port }) + "\\n"));
`;

/** Why fake pods cannot run here, or undefined when they can. */
export function podHostMissing(): string | undefined {
  if (process.getuid?.() !== 0) return "fake pods need root (a network namespace per fake pod)";
  try {
    execFileSync("ip", ["netns", "list"], { stdio: "ignore" });
  } catch {
    return "fake pods need iproute2's `ip netns`";
  }
  return undefined;
}

function ip(...args: string[]): void {
  execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });
}

export interface FakeRunner {
  /** The fake pod's address, inside its network namespace. */
  address: string;
  port: number;
  close(): Promise<void>;
}

/**
 * A local HTTP server that answers every request as a runner would (`pod:<path>`), in its own netns;
 * on `port` (a random one by default: the namespace is its own, so any port is free), with `headers`.
 */
export async function startFakeRunner(
  opts: { port?: number; headers?: Record<string, string> } = {},
): Promise<FakeRunner> {
  const id = `${process.pid % 100_000}${randomInt(100, 1000)}`;
  const ns = `faas-apitest-${id}`;
  const hostIf = `fah${id}`;
  const podIf = `fap${id}`;
  const block = randomInt(0, 16_384) * 4;
  const net = `10.254.${block >> 8}.${block & 255}`;
  const [a, b, c, d] = net.split(".").map(Number) as [number, number, number, number];
  const hostAddr = `${a}.${b}.${c}.${d + 1}`;
  const podAddr = `${a}.${b}.${c}.${d + 2}`;
  let child: ChildProcess | undefined;
  const cleanup = (): void => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    try {
      ip("netns", "del", ns);
    } catch {}
    try {
      ip("link", "del", hostIf);
    } catch {}
  };
  process.once("exit", cleanup);
  try {
    ip("netns", "add", ns);
    ip("link", "add", hostIf, "type", "veth", "peer", "name", podIf);
    ip("link", "set", podIf, "netns", ns);
    ip("addr", "add", `${hostAddr}/30`, "dev", hostIf);
    ip("link", "set", hostIf, "up");
    ip("-n", ns, "addr", "add", `${podAddr}/30`, "dev", podIf);
    ip("-n", ns, "link", "set", podIf, "up");
    ip("-n", ns, "link", "set", "lo", "up");
    const args = [podAddr, String(opts.port ?? 0), JSON.stringify(opts.headers ?? {})];
    child = spawn("ip", ["netns", "exec", ns, process.execPath, "-e", SERVER, ...args], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const started = child;
    const port = await new Promise<number>((resolve, reject) => {
      let out = "";
      started.stdout?.on("data", (chunk: Buffer) => {
        out += chunk.toString();
        const line = out.split("\n")[0];
        if (out.includes("\n") && line) resolve((JSON.parse(line) as { port: number }).port);
      });
      started.once("exit", (code) => reject(new Error(`fake runner exited with ${code} before listening`)));
    });
    return {
      address: podAddr,
      port,
      close: async () => {
        process.off("exit", cleanup);
        const exited = new Promise((r) => started.once("exit", r));
        cleanup();
        if (started.exitCode === null && started.signalCode === null) await exited;
      },
    };
  } catch (err) {
    cleanup();
    process.off("exit", cleanup);
    throw err;
  }
}
