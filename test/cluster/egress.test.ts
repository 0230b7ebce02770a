/**
 * Pod traffic stays on this machine: a pod cannot reach a host outside the
 * cluster's bridge, not even one on this machine. The "outside" host is a
 * network namespace this test makes (veth, 10.246.0.0/30) with an HTTP server
 * that the host itself can reach; from the pod the same address is refused.
 * Needs root (unshare, nsenter), like the cluster.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readlinkSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { httpGet, useTestNamespace, waitFor } from "./fixture.js";

const ns = useTestNamespace("egress");
const hostSide = "faaseg0";
const outsideSide = "faaseg1";
const hostAddr = "10.246.0.1";
const outsideAddr = "10.246.0.2";
const port = 8099;

function run(cmd: string, ...args: string[]): void {
  execFileSync(cmd, args, { stdio: "pipe" });
}

const probe = `
import socket, sys
s = socket.socket()
s.settimeout(5)
try:
    s.connect(("${outsideAddr}", ${port}))
    print("connected")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print("failed", type(e).__name__, e)
`;

describe("pod egress", () => {
  let holder: ChildProcess | undefined;
  let server: ChildProcess | undefined;

  beforeAll(async () => {
    // The outside host: a network namespace held by a sleeping process (not
    // `ip netns add`, which would leave a bind mount on /run/netns).
    holder = spawn("unshare", ["--net", "sleep", "600"], { stdio: "ignore" });
    const pid = String(holder.pid);
    // The child exists before unshare(2) has run in it: until its network namespace differs from
    // this process's, a veth end moved "into" it would land here (seen once on CI).
    const netns = (p: string): string => readlinkSync(`/proc/${p}/ns/net`);
    await waitFor("the outside host's namespace", async () => (netns(pid) !== netns("self") ? true : undefined), {
      timeoutMs: 10_000,
      intervalMs: 20,
    });
    run("ip", "link", "add", hostSide, "type", "veth", "peer", "name", outsideSide, "netns", pid);
    run("ip", "addr", "add", `${hostAddr}/30`, "dev", hostSide);
    run("ip", "link", "set", hostSide, "up");
    const inside = ["-t", pid, "--net"];
    run("nsenter", ...inside, "ip", "addr", "add", `${outsideAddr}/30`, "dev", outsideSide);
    run("nsenter", ...inside, "ip", "link", "set", outsideSide, "up");
    run("nsenter", ...inside, "ip", "link", "set", "lo", "up");
    server = spawn("nsenter", [...inside, "python3", "-m", "http.server", "--bind", outsideAddr, String(port)], {
      stdio: "ignore",
    });
    await waitFor("the outside host's server", async () =>
      (await httpGet(`http://${outsideAddr}:${port}/`, 2_000)).status === 200 ? true : undefined,
    );
    await ns.apply(`
apiVersion: v1
kind: Pod
metadata: { name: prober }
spec:
  terminationGracePeriodSeconds: 0
  containers:
    - name: prober
      image: faas-python-runner:latest
      imagePullPolicy: Never
      command: ["python3", "-c", "import time; time.sleep(3600)"]
`);
    await ns.kubectl(["wait", "--for=condition=Ready", "pod/prober", "--timeout=120s"], { timeoutMs: 150_000 });
  });

  afterAll(() => {
    server?.kill("SIGKILL");
    // The veth pair goes with the namespace, once its holder is gone.
    holder?.kill("SIGKILL");
    try {
      run("ip", "link", "del", hostSide);
    } catch {
      // already gone
    }
  });

  it("the host reaches the outside host", async () => {
    expect((await httpGet(`http://${outsideAddr}:${port}/`)).status).toBe(200);
  });

  it("a pod does not: its traffic is rejected before it leaves the bridge", async () => {
    const { stdout } = await ns.kubectl(["exec", "prober", "--", "python3", "-c", probe]);
    expect(stdout.trim()).toBe("refused");
  });
});
