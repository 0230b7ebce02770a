import { createServer, type IncomingHttpHeaders, request, type Server } from "node:http";
import { RUNNER_PORT } from "@faas/api";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import {
  type Announcement,
  type AnnounceResult,
  AnnounceServer,
  parseAnnouncement,
  RELAYED_HEADER,
} from "./announcements.js";

const log = pino({ level: "silent" });
const good: Announcement = {
  namespace: "default",
  pod: "fn-hello-deploy-5d9c7b6f4-x2k8q",
  uid: "0f7c6a52-3a0e-4c1e-9f8e-2b1d7e6c5a40",
  ip: "10.244.0.17",
  port: RUNNER_PORT,
  uptimeMs: 182.4,
};

describe("parseAnnouncement", () => {
  it("accepts a runner's announcement as it sends it", () => {
    expect(parseAnnouncement(JSON.parse(JSON.stringify(good)))).toEqual(good);
    expect(parseAnnouncement({ ...good, ip: "fd00::17" }).ip).toBe("fd00::17");
  });

  const bad: [string, unknown][] = [
    ["not an object", [good]],
    ["null", null],
    ["a namespace that is not a DNS label", { ...good, namespace: "Default" }],
    ["a namespace over 63 characters", { ...good, namespace: "a".repeat(64) }],
    ["a pod name with a slash", { ...good, pod: "../etc" }],
    ["a pod name over 253 characters", { ...good, pod: "a".repeat(254) }],
    ["a UID that is not hex and dashes", { ...good, uid: "x; rm -rf" }],
    ["an empty UID", { ...good, uid: "" }],
    ["a host name instead of an address", { ...good, ip: "evil.example.com" }],
    ["another port than the runner's", { ...good, port: 22 }],
    ["a negative uptime", { ...good, uptimeMs: -1 }],
    ["an uptime that is not a number", { ...good, uptimeMs: "5" }],
    ["a missing field", { ...good, uid: undefined }],
  ];
  for (const [name, value] of bad) {
    it(`refuses ${name}`, () => {
      expect(() => parseAnnouncement(value)).toThrow();
    });
  }

  it("refuses random values without throwing anything but an Error (property)", () => {
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)] as T;
    const values = [undefined, null, 0, -1, 1e30, "", "a", "10.0.0.1", {}, [], true, "x".repeat(300)];
    const keys = Object.keys(good) as (keyof Announcement)[];
    for (let i = 0; i < 2000; i++) {
      const v: Record<string, unknown> = { ...good };
      for (let k = 0; k < 1 + Math.floor(Math.random() * 3); k++) v[pick(keys)] = pick(values);
      try {
        const a = parseAnnouncement(v);
        // Whatever passes is a well-formed announcement.
        expect(a.port).toBe(RUNNER_PORT);
        expect(typeof a.uid).toBe("string");
      } catch (err) {
        expect(err).toBeInstanceOf(Error);
      }
    }
  });
});

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve((server.address() as { port: number }).port)),
  );
}

/** A stand-in for another gateway's announce port: records what it gets. */
async function peer(): Promise<{ address: string; got: Received[]; close(): void }> {
  const got: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      got.push({ headers: req.headers, body: Buffer.concat(chunks).toString() });
      res.writeHead(202).end("{}");
    });
  });
  const port = await listen(server);
  return { address: `127.0.0.1:${port}`, got, close: () => server.close() };
}

function send(
  port: number,
  opts: { method?: string; path?: string; body?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: "127.0.0.1", port, method: opts.method ?? "POST", path: opts.path ?? "/announce", headers: opts.headers },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      },
    );
    req.on("error", reject);
    req.end(opts.body);
  });
}

const until = async (what: string, ok: () => boolean): Promise<void> => {
  const deadline = Date.now() + 5000;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe("AnnounceServer", () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c();
  });

  async function start(result: AnnounceResult = "accepted", peers: string[] = []) {
    const seen: Announcement[] = [];
    const server = new AnnounceServer({
      port: 0,
      host: "127.0.0.1",
      sink: {
        announce: (a) => {
          seen.push(a);
          return result;
        },
      },
      peers: { list: () => peers },
      log,
    });
    const port = await server.listen();
    cleanups.push(() => server.close());
    const registry = new Registry();
    server.registerMetrics(registry);
    return { port, seen, registry };
  }

  it("hands a valid announcement to the backend, answers 202 with its verdict and passes it on to every peer once", async () => {
    const [p1, p2] = [await peer(), await peer()];
    cleanups.push(p1.close, p2.close);
    const { port, seen, registry } = await start("accepted", [p1.address, p2.address]);
    const res = await send(port, { body: JSON.stringify(good), headers: { "content-type": "application/json" } });
    expect(res).toEqual({ status: 202, body: '{"result":"accepted"}' });
    expect(seen).toEqual([good]);
    await until("both peers", () => p1.got.length === 1 && p2.got.length === 1);
    for (const p of [p1, p2]) {
      expect(p.got[0]?.headers[RELAYED_HEADER]).toBe("1");
      expect(JSON.parse(p.got[0]?.body ?? "")).toEqual(good);
    }
    const metrics = await registry.metrics();
    expect(metrics).toContain('faas_pod_announcements_total{result="accepted",relayed="false"} 1');
    await until("relay counted", () => p1.got.length + p2.got.length === 2);
  });

  it("does not pass on an announcement another gateway passed on", async () => {
    const p1 = await peer();
    cleanups.push(p1.close);
    const { port, seen } = await start("pending", [p1.address]);
    const res = await send(port, { body: JSON.stringify(good), headers: { [RELAYED_HEADER]: "1" } });
    expect(res.status).toBe(202);
    expect(JSON.parse(res.body)).toEqual({ result: "pending" });
    expect(seen).toHaveLength(1);
    // A relay would be sent before the answer; give it time to arrive anyway.
    await new Promise((r) => setTimeout(r, 100));
    expect(p1.got).toHaveLength(0);
  });

  it("refuses what is not an announcement, with a clear error, and hands nothing on", async () => {
    const p1 = await peer();
    cleanups.push(p1.close);
    const { port, seen, registry } = await start("accepted", [p1.address]);
    const cases: [Parameters<typeof send>[1], number, string][] = [
      [{ body: "{not json" }, 400, "BAD_REQUEST"],
      [{ body: JSON.stringify({ ...good, port: 9999 }) }, 400, "port"],
      [{ body: JSON.stringify({ ...good, ip: "example.com" }) }, 400, "ip"],
      [{ body: "x".repeat(5000) }, 413, "PAYLOAD_TOO_LARGE"],
      [{ method: "GET" }, 405, "METHOD_NOT_ALLOWED"],
      [{ path: "/invoke/hello", body: "{}" }, 404, "NOT_FOUND"],
    ];
    for (const [opts, status, text] of cases) {
      const res = await send(port, opts).catch((err: Error) => ({ status: -1, body: err.message }));
      // An oversized body may be cut off by the server before the client finishes writing it.
      if (status === 413 && res.status === -1) continue;
      expect(res.status, JSON.stringify(opts).slice(0, 80)).toBe(status);
      expect(res.body).toContain(text);
    }
    expect(seen).toHaveLength(0);
    expect(p1.got).toHaveLength(0);
    expect(await registry.metrics()).toContain('faas_pod_announcements_total{result="invalid",relayed="false"} 3');
  });

  it("a backend that throws answers 500 and the server goes on", async () => {
    const server = new AnnounceServer({
      port: 0,
      host: "127.0.0.1",
      sink: {
        announce: () => {
          throw new Error("boom");
        },
      },
      log,
    });
    const port = await server.listen();
    cleanups.push(() => server.close());
    expect((await send(port, { body: JSON.stringify(good) })).status).toBe(500);
    expect((await send(port, { body: "{" })).status).toBe(400);
  });
});
