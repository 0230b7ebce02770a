import { createHash } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, type Server } from "node:http";
import { connect, createServer, type Server as NetServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { KubeClient } from "./kube-client.js";
import { choosePod, PORT_FORWARD_PROTOCOL, PortForwarder, readyPodNames } from "./port-forward.js";
import { decodeFrames, encodeFrame } from "./web-socket.js";

/** A server frame: unmasked, FIN, binary. */
function serverFrame(payload: Buffer): Buffer {
  const len = payload.length;
  let head: Buffer;
  if (len < 126) head = Buffer.from([0x82, len]);
  else if (len < 65_536) head = Buffer.from([0x82, 126, (len >> 8) & 0xff, len & 0xff]);
  else {
    head = Buffer.alloc(10);
    head[0] = 0x82;
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  return Buffer.concat([head, payload]);
}

const pod = (name: string, ready: boolean, deleting = false) => ({
  metadata: { name, ...(deleting ? { deletionTimestamp: "2026-01-01T00:00:00Z" } : {}) },
  status: { phase: "Running", conditions: [{ type: "Ready", status: ready ? "True" : "False" }] },
});

describe("readyPodNames / choosePod", () => {
  it("keeps only running, ready pods not being deleted", () => {
    const pods = [pod("b", true), pod("a", true, true), pod("c", false), pod("d", true)];
    expect(readyPodNames(pods)).toEqual(["b", "d"]);
  });
  it("sticks to the current pod while it is ready, else takes the first", () => {
    expect(choosePod(["b", "d"], "d")).toBe("d");
    expect(choosePod(["b", "d"], "a")).toBe("b");
    expect(choosePod([], "a")).toBeUndefined();
  });
});

describe("WebSocket frames", () => {
  it("round-trip masked client frames of every length class", () => {
    for (const size of [0, 1, 125, 126, 65_535, 65_536, 200_000]) {
      const payload = Buffer.alloc(size, 7);
      const { frames, rest } = decodeFrames(encodeFrame(2, payload));
      expect(rest.length).toBe(0);
      expect(frames).toHaveLength(1);
      expect(frames[0]?.opcode).toBe(2);
      expect(frames[0]?.payload.equals(payload)).toBe(true);
    }
  });
  it("leaves a partial frame for the next chunk", () => {
    const two = Buffer.concat([serverFrame(Buffer.from("one")), serverFrame(Buffer.from("two"))]);
    const first = decodeFrames(two.subarray(0, 7));
    expect(first.frames.map((f) => f.payload.toString())).toEqual(["one"]);
    const second = decodeFrames(Buffer.concat([first.rest, two.subarray(7)]));
    expect(second.frames.map((f) => f.payload.toString())).toEqual(["two"]);
  });
});

/**
 * A fake API server: lists pods, and upgrades `pods/<pod>/portforward` to the
 * `v4.channel.k8s.io` protocol, relaying channel 0 to a TCP backend that
 * answers `<pod>:<what it got>`. Pods can be made ready, unready or gone.
 */
describe("PortForwarder against a fake API server", () => {
  let api: Server;
  let backend: NetServer;
  let backendPort: number;
  let client: KubeClient;
  const pods = new Map<string, { ready: boolean; gone?: boolean }>();
  const upgrades: string[] = [];
  let forwarder: PortForwarder | undefined;

  beforeAll(async () => {
    backend = createServer((s) => {
      // The relay sends the pod name and a newline first, then the client's bytes.
      let podName: string | undefined;
      let head = "";
      s.on("data", (d: Buffer) => {
        if (podName !== undefined) return void s.write(d);
        head += d.toString();
        const nl = head.indexOf("\n");
        if (nl < 0) return;
        podName = head.slice(0, nl);
        s.write(`${podName}:${head.slice(nl + 1)}`);
      });
    });
    await new Promise<void>((r) => backend.listen(0, "127.0.0.1", () => r()));
    backendPort = (backend.address() as { port: number }).port;

    api = createHttpServer((req, res) => {
      if (req.url?.startsWith("/api/v1/namespaces/ns/pods?")) {
        const items = [...pods].filter(([, p]) => !p.gone).map(([name, p]) => pod(name, p.ready));
        res.setHeader("content-type", "application/json");
        res.end(JSON.stringify({ metadata: { resourceVersion: "1" }, items }));
        return;
      }
      res.statusCode = 404;
      res.end("{}");
    });
    api.on("upgrade", (req, socket: Socket) => {
      const m = /^\/api\/v1\/namespaces\/ns\/pods\/([^/]+)\/portforward\?ports=8000$/.exec(req.url ?? "");
      const name = m?.[1] ?? "";
      upgrades.push(name);
      const p = pods.get(name);
      if (!m || p === undefined || p.gone || req.headers["sec-websocket-protocol"] !== PORT_FORWARD_PROTOCOL) {
        socket.end('HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\n\r\n{"message":"pods not found"}');
        return;
      }
      const accept = createHash("sha1")
        .update(`${req.headers["sec-websocket-key"]}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
        .digest("base64");
      socket.write(
        `HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ${accept}\r\nsec-websocket-protocol: ${PORT_FORWARD_PROTOCOL}\r\n\r\n`,
      );
      const port = Buffer.from([0x40, 0x1f]); // 8000, little-endian
      socket.write(serverFrame(Buffer.concat([Buffer.from([0]), port])));
      socket.write(serverFrame(Buffer.concat([Buffer.from([1]), port])));
      const upstream = connect(backendPort, "127.0.0.1", () => upstream.write(`${name}\n`));
      upstream.on("data", (d: Buffer) => socket.write(serverFrame(Buffer.concat([Buffer.from([0]), d]))));
      upstream.on("error", () => socket.destroy());
      let pending: Buffer = Buffer.alloc(0);
      socket.on("data", (chunk: Buffer) => {
        const { frames, rest } = decodeFrames(Buffer.concat([pending, chunk]));
        pending = rest;
        for (const f of frames) {
          if (f.opcode === 8) {
            upstream.end();
            socket.end();
          } else if (f.payload[0] === 0) upstream.write(f.payload.subarray(1));
        }
      });
      socket.on("error", () => upstream.destroy());
    });
    await new Promise<void>((r) => api.listen(0, "127.0.0.1", () => r()));
    const dir = mkdtempSync(join(tmpdir(), "faas-kubeconfig-"));
    const file = join(dir, "config");
    writeFileSync(
      file,
      `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:${(api.address() as { port: number }).port}", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: default}}, {name: y, context: {cluster: c, user: u, namespace: other}}]
current-context: x
`,
    );
    client = KubeClient.load({ kubeconfig: file, context: "y" });
  });
  afterEach(async () => {
    await forwarder?.close();
    forwarder = undefined;
    pods.clear();
    upgrades.length = 0;
  });
  afterAll(async () => {
    await new Promise((r) => api.close(r));
    await new Promise((r) => backend.close(r));
  });

  /** One connection through the forward: sends `text`, resolves with everything it got back. */
  function exchange(port: number, text: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const s = connect(port, "127.0.0.1", () => s.write(text));
      let got = "";
      s.on("data", (d: Buffer) => {
        got += d.toString();
        if (got.endsWith(text)) {
          s.end();
          resolve(got);
        }
      });
      s.on("error", reject);
      s.on("close", () => resolve(got));
    });
  }

  it("load picks the named context", () => {
    expect(client.namespace).toBe("other");
  });

  it("relays bytes both ways through a ready pod, the port number prefix stripped", async () => {
    pods.set("gw-a", { ready: false });
    pods.set("gw-b", { ready: true });
    forwarder = new PortForwarder(client, { namespace: "ns", selector: "app=gw", port: 8000 });
    const port = await forwarder.start();
    expect(await exchange(port, "hello")).toBe("gw-b:hello");
    const big = "x".repeat(100_000);
    expect(await exchange(port, big)).toBe(`gw-b:${big}`);
    expect(forwarder.podsUsed).toEqual(["gw-b"]);
  });

  it("moves to another ready pod when its pod goes, and past a pod that vanished after listing", async () => {
    pods.set("gw-a", { ready: true });
    pods.set("gw-b", { ready: true });
    forwarder = new PortForwarder(client, { namespace: "ns", selector: "app=gw", port: 8000 });
    const port = await forwarder.start();
    expect(await exchange(port, "1")).toBe("gw-a:1");
    expect(await exchange(port, "2")).toBe("gw-a:2");
    // gw-a is deleted (a rollout): the next connection goes to gw-b.
    pods.delete("gw-a");
    pods.set("gw-c", { ready: true });
    expect(await exchange(port, "3")).toBe("gw-b:3");
    // gw-b is still listed but its upgrade fails (the pod is gone): the retry lands on gw-c.
    api.prependOnceListener("upgrade", () => {
      pods.delete("gw-b");
    });
    expect(await exchange(port, "4")).toBe("gw-c:4");
    expect(forwarder.podsUsed).toEqual(["gw-a", "gw-b", "gw-c"]);
  });

  it("refuses to start without a ready pod", async () => {
    pods.set("gw-a", { ready: false });
    forwarder = new PortForwarder(client, { namespace: "ns", selector: "app=gw", port: 8000 });
    await expect(forwarder.start()).rejects.toThrow(/no ready pod with app=gw in namespace ns/);
  });
});
