import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KubeClient, RESOURCES } from "./kube-client.js";

/**
 * An API server that is stopped (SIGSTOP) takes no connection: once its listen
 * queue is full, the kernel drops new SYNs and a client's connect hangs. A
 * listening socket that never accepts, its queue filled, is the same thing.
 */
describe("KubeClient deadlines", () => {
  let server: ChildProcess;
  let port: number;
  const fillers: Socket[] = [];

  beforeAll(async () => {
    server = spawn(
      "python3",
      [
        "-c",
        "import socket,sys,time\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(600)",
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    const [line] = await createInterface({ input: server.stdout! })
      [Symbol.asyncIterator]()
      .next()
      .then((r) => [r.value]);
    port = Number(line);
    // Fill the accept queue (backlog 0 holds one; one more waits in SYN-RECV), so later SYNs are dropped.
    for (let i = 0; i < 3; i++) {
      const s = connect(port, "127.0.0.1");
      s.on("error", () => {});
      fillers.push(s);
    }
    await new Promise((r) => setTimeout(r, 200));
  });
  afterAll(() => {
    for (const s of fillers) s.destroy();
    server?.kill("SIGKILL");
  });

  function client(): KubeClient {
    const dir = mkdtempSync(join(tmpdir(), "faas-kubeconfig-"));
    const file = join(dir, "config");
    writeFileSync(
      file,
      `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:${port}", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: default}}]
current-context: x
`,
    );
    return KubeClient.load({ kubeconfig: file, requestTimeoutMs: 30_000 });
  }

  it("a call's deadline covers connecting: it fails by then, and the client knows the API server is unreachable", async () => {
    const c = client();
    expect(c.unreachable()).toBeUndefined();
    const t0 = performance.now();
    const err = await c
      .get({ ...RESOURCES.deployments, namespace: "default", name: "x", subresource: "scale" }, undefined, {
        timeoutMs: 500,
      })
      .then(
        () => undefined,
        (e: unknown) => e as Error,
      );
    const ms = performance.now() - t0;
    expect(err?.message).toMatch(/did not answer GET .*scale within 500 ms/);
    expect(ms).toBeGreaterThanOrEqual(450);
    expect(ms).toBeLessThan(2000);
    expect(c.unreachable()?.reason).toMatch(/did not answer/);
    expect(await c.ping(300)).toBe(false);
  });
});
