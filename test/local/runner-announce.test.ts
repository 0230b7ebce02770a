/**
 * What a function pod's runner does on Kubernetes without a volume, for both
 * runners (docs/runner-protocol.md, "Starting with the code in the
 * environment" and "Announcing a pod"): it loads its function from
 * FAAS_FUNCTION_SPEC / FAAS_FUNCTION_CODE, names its pod's UID on /readyz, and
 * once loaded (never before) POSTs its address to FAAS_ANNOUNCE_URL, retrying
 * an unreachable or failing gateway a few times but not one that refuses.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createServer, type IncomingMessage, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const UID = "6c1f0f3e-8a4b-4f7e-9d2c-1a2b3c4d5e6f";

const KINDS = [
  {
    runtime: "python",
    command: "python3",
    args: ["-m", "faas_runner"],
    env: { PYTHONPATH: `${ROOT}/packages/runner-python` },
    code: 'def handle(req):\n    return "hello from env"\n',
    broken: "def handle(req:\n",
  },
  {
    runtime: "nodejs",
    command: process.execPath,
    args: [`${ROOT}/packages/runner-node/dist/main.js`],
    env: {},
    code: 'export const handle = () => "hello from env";\n',
    broken: "export const handle = (;\n",
  },
] as const;

interface Reply {
  status: number;
  headers: IncomingMessage["headers"];
  body: string;
}

function http(url: string, method = "GET"): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, agent: false }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => {
        body += c.toString();
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

/** A stand-in gateway announce port: answers with the statuses given in turn (202 after them). */
async function gatewayStub(statuses: number[] = []): Promise<{
  url: string;
  got: { body: Record<string, unknown>; runnerReady: number }[];
  server: Server;
}> {
  const got: { body: Record<string, unknown>; runnerReady: number }[] = [];
  const server = createServer((req, res) => {
    let text = "";
    req.on("data", (c: Buffer) => {
      text += c.toString();
    });
    req.on("end", async () => {
      const body = JSON.parse(text) as Record<string, unknown>;
      // What the runner's /readyz says at the moment it announces.
      const ready = await http(`http://127.0.0.1:${body.port}/readyz`).catch(() => ({ status: 0 }));
      got.push({ body, runnerReady: ready.status });
      res.writeHead(statuses.shift() ?? 202).end("{}");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/announce`, got, server };
}

const children: ChildProcess[] = [];
const servers: Server[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill("SIGKILL");
  for (const s of servers.splice(0)) s.close();
});

function startRunner(
  kind: (typeof KINDS)[number],
  env: Record<string, string>,
): { child: ChildProcess; port: Promise<number>; exit: Promise<number | null>; output: () => string } {
  const child = spawn(kind.command, kind.args, {
    env: { ...process.env, ...kind.env, FAAS_PORT: "0", FAAS_HOST: "127.0.0.1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let output = "";
  child.stderr?.on("data", (c: Buffer) => {
    output += c.toString();
  });
  const port = new Promise<number>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.on("line", (line) => {
      output += `${line}\n`;
      if (line.includes('"listening"')) resolve((JSON.parse(line) as { port: number }).port);
    });
    child.once("exit", () => reject(new Error(`runner exited before listening:\n${output}`)));
  });
  port.catch(() => undefined);
  const exit = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  return { child, port, exit, output: () => output };
}

const until = async (what: string, ok: () => boolean, ms = 10_000): Promise<void> => {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe.each(KINDS)("$runtime runner started with its code in the environment", (kind) => {
  const spec = (extra: Record<string, unknown> = {}) =>
    JSON.stringify({ name: "hello", runtime: kind.runtime, handler: "main.handle", ...extra });
  const podEnv = (url: string) => ({
    FAAS_ANNOUNCE_URL: url,
    FAAS_POD_NAMESPACE: "default",
    FAAS_POD_NAME: "fn-hello-deploy-abc12-xyz34",
    FAAS_POD_UID: UID,
    FAAS_POD_IP: "127.0.0.1",
  });

  it("serves the function, never specializes, names its pod on /readyz and announces itself once loaded", async () => {
    const gw = await gatewayStub();
    servers.push(gw.server);
    const r = startRunner(kind, { FAAS_FUNCTION_SPEC: spec(), FAAS_FUNCTION_CODE: kind.code, ...podEnv(gw.url) });
    const port = await r.port;
    const invoked = await http(`http://127.0.0.1:${port}/invoke`);
    expect({ status: invoked.status, body: invoked.body }).toEqual({ status: 200, body: "hello from env" });
    const ready = await http(`http://127.0.0.1:${port}/readyz`);
    expect(ready.status).toBe(200);
    expect(ready.headers["x-faas-pod-uid"]).toBe(UID);
    const again = await http(`http://127.0.0.1:${port}/specialize`, "POST");
    expect(again.status).toBe(403);
    expect(again.body).toContain("FAAS_FUNCTION_SPEC");
    await until("the announcement", () => gw.got.length === 1);
    const body = gw.got[0]?.body ?? {};
    expect(body).toMatchObject({
      namespace: "default",
      pod: "fn-hello-deploy-abc12-xyz34",
      uid: UID,
      ip: "127.0.0.1",
      port,
    });
    expect(body.uptimeMs).toBeGreaterThan(0);
    // Announced only when ready: the runner's /readyz said 200 while the announcement was in flight.
    expect(gw.got[0]?.runnerReady).toBe(200);
    await new Promise((res) => setTimeout(res, 300));
    expect(gw.got).toHaveLength(1);
  });

  it("asks again when the gateway fails (5xx), not when it refuses (4xx)", async () => {
    const failing = await gatewayStub([503, 503]);
    const refusing = await gatewayStub([400]);
    servers.push(failing.server, refusing.server);
    startRunner(kind, { FAAS_FUNCTION_SPEC: spec(), FAAS_FUNCTION_CODE: kind.code, ...podEnv(failing.url) });
    startRunner(kind, { FAAS_FUNCTION_SPEC: spec(), FAAS_FUNCTION_CODE: kind.code, ...podEnv(refusing.url) });
    await until("three attempts", () => failing.got.length === 3);
    await until("one attempt", () => refusing.got.length === 1);
    await new Promise((res) => setTimeout(res, 700));
    expect(failing.got).toHaveLength(3);
    expect(refusing.got).toHaveLength(1);
  });

  it("announces nothing without its pod's identity, and keeps serving when no gateway listens", async () => {
    const gw = await gatewayStub();
    servers.push(gw.server);
    const { FAAS_POD_UID: _uid, ...noUid } = podEnv(gw.url);
    const r1 = startRunner(kind, { FAAS_FUNCTION_SPEC: spec(), FAAS_FUNCTION_CODE: kind.code, ...noUid });
    // A port nothing listens on: every attempt fails, none is fatal.
    const r2 = startRunner(kind, {
      FAAS_FUNCTION_SPEC: spec(),
      FAAS_FUNCTION_CODE: kind.code,
      ...podEnv("http://127.0.0.1:9/announce"),
    });
    const [p1, p2] = [await r1.port, await r2.port];
    await new Promise((res) => setTimeout(res, 900));
    expect(gw.got).toHaveLength(0);
    for (const p of [p1, p2]) expect((await http(`http://127.0.0.1:${p}/invoke`)).body).toBe("hello from env");
    expect(r2.output()).toMatch(/announce.failed/);
  });

  it("exits 1 naming FAAS_FUNCTION_SPEC when it is not JSON, and announces nothing when the code does not load", async () => {
    const gw = await gatewayStub();
    servers.push(gw.server);
    const bad = startRunner(kind, { FAAS_FUNCTION_SPEC: "{not json", ...podEnv(gw.url) });
    expect(await bad.exit).toBe(1);
    expect(bad.output()).toContain("FAAS_FUNCTION_SPEC");
    const broken = startRunner(kind, {
      FAAS_FUNCTION_SPEC: spec(),
      FAAS_FUNCTION_CODE: kind.broken,
      ...podEnv(gw.url),
    });
    expect(await broken.exit).toBe(1);
    expect(gw.got).toHaveLength(0);
  });
});
