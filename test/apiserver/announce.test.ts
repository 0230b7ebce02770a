/**
 * Announced pods (ADR 0018) against a real API server: a cold start waits for
 * a pod that the API server knows but has no address for (no kubelet runs
 * here, as on a real node before its next status sync); the pod's runner
 * announces itself. The gateway routes to it only when the pod in its watch
 * has that name and UID and the runner at the address names the same UID —
 * whichever of the announcement and the watch event comes first.
 */

import { FUNCTION_LABEL, RUNNER_PORT } from "@faas/api";
import { createLogger, DEFAULT_GATEWAY_CONFIG, Gateway } from "@faas/gateway";
import { type KubeClient, type KubeObject, RESOURCES } from "@faas/kube";
import { type Announcement, KubeBackend } from "@faas/kube-backend";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call } from "../support/http.js";
import { on } from "./fault-proxy.js";
import { ApiServer, apiServerSkipReason } from "./fixture.js";
import { type FakeRunner, podHostMissing, startFakeRunner } from "./pod-host.js";
import { createDeployment, createFunction, createNamespace, eventually, FIELD_MANAGER, randomName } from "./scene.js";

const skip = apiServerSkipReason() ?? podHostSkipReason();

function podHostSkipReason(): string | undefined {
  const missing = podHostMissing();
  if (missing === undefined) return undefined;
  if (process.env.FAAS_REQUIRE_APISERVER === "1") throw new Error(`API-server tests required, but ${missing}`);
  console.log(`skipping the announcement API-server tests: ${missing}`);
  return missing;
}

const NO_POOL = { enabled: false, specializeTimeoutMs: 5000, maxAttempts: 1 };
const log = createLogger(process.env.FAAS_TEST_LOG ?? "silent", "test-gateway");

describe.skipIf(skip !== undefined)("announced pods against a real API server", () => {
  let api: ApiServer;
  let admin: KubeClient;
  const stops: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    api = await ApiServer.start();
    admin = api.directClient();
  }, 60_000);
  afterAll(async () => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
    await api?.stop();
  });

  async function runner(uid: string): Promise<FakeRunner> {
    const r = await startFakeRunner({ port: RUNNER_PORT, headers: { "x-faas-pod-uid": uid } });
    stops.push(() => r.close());
    return r;
  }

  /** A namespace with a function at zero, and a gateway for it whose API traffic goes through the proxy. */
  async function scene(parkTimeoutMs = 8000) {
    const ns = await createNamespace(admin, "ann");
    const fn = randomName("f");
    await createFunction(admin, ns, fn);
    await createDeployment(admin, ns, fn, 0);
    const backend = new KubeBackend(
      api.client(),
      { namespace: ns, scaleUpTimeoutMs: 20_000, activityTickMs: 250, pool: NO_POOL },
      log,
    );
    const gateway = new Gateway({ ...DEFAULT_GATEWAY_CONFIG, port: 0, parkTimeoutMs }, backend, log, {
      defaultMetrics: false,
    });
    await gateway.start();
    stops.push(() => gateway.stop());
    return { ns, fn, backend, gateway };
  }

  /** The pod the Deployment controller would make: no address yet (no kubelet here). */
  async function createPod(ns: string, fn: string): Promise<KubeObject> {
    // No controller makes the namespace's default ServiceAccount here; pod admission wants it.
    await admin
      .create(
        { group: "", version: "v1", plural: "serviceaccounts", namespace: ns },
        { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "default" } },
        FIELD_MANAGER,
      )
      .catch((err: { status?: number }) => {
        if (err.status !== 409) throw err;
      });
    return admin.create(
      { ...RESOURCES.pods, namespace: ns },
      {
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: `fn-${fn}-deploy-${randomName("p")}`, labels: { [FUNCTION_LABEL]: fn } },
        spec: { containers: [{ name: "runner", image: "faas-runner:test" }] },
      },
      FIELD_MANAGER,
    );
  }

  const announcement = (ns: string, pod: KubeObject, ip: string, uid = pod.metadata.uid ?? ""): Announcement => ({
    namespace: ns,
    pod: pod.metadata.name,
    uid,
    ip,
    port: RUNNER_PORT,
    uptimeMs: 40,
  });

  /** Sends a cold request and waits until the gateway has asked for a replica. */
  async function coldRequest(s: { ns: string; fn: string; gateway: Gateway }) {
    const patched = api.proxy.waitFor(on({ verb: "patch", resource: "deployments/scale", namespace: s.ns }));
    const reply = call(`${s.gateway.url}/invoke/${s.fn}/x`);
    await patched;
    return reply;
  }

  it("a cold start is served by a pod that announced itself, with no address from the API server and no EndpointSlice", async () => {
    const s = await scene();
    const reply = coldRequest(s);
    const pod = await createPod(s.ns, s.fn);
    const r = await runner(pod.metadata.uid ?? "");
    // The gateway's watch has the pod (its name and UID) before the announcement is checked against it.
    await new Promise((res) => setTimeout(res, 200));
    expect(s.backend.announce(announcement(s.ns, pod, r.address))).toBe("accepted");
    const got = await reply;
    expect({ status: got.status, body: got.body }).toEqual({ status: 200, body: "pod:/invoke/x" });
    // The server-timing names when the runner's process started and when it answered.
    expect(got.headers["server-timing"]).toMatch(/started;dur=/);
    expect(got.headers["server-timing"]).toMatch(/ready;dur=/);
  });

  it("an announcement that comes before the pod reaches the gateway's watch is kept, and used when it does", async () => {
    const s = await scene();
    const reply = coldRequest(s);
    // Hold the pod watch's next start, then cut it: the pod is created while the gateway cannot see it.
    const podWatch = on({ verb: "watch", resource: "pods", namespace: s.ns });
    await eventually(() => api.proxy.openWatches(podWatch) > 0, 5000, "the gateway's pod watch is open");
    let release!: () => void;
    const held = api.proxy.fault(podWatch, {
      kind: "hold",
      until: new Promise<void>((r) => {
        release = r;
      }),
    });
    expect(api.proxy.cutWatches(podWatch)).toBe(1);
    await api.proxy.waitFor(on({ verb: "watch", resource: "pods", namespace: s.ns }));
    const pod = await createPod(s.ns, s.fn);
    const r = await runner(pod.metadata.uid ?? "");
    expect(s.backend.announce(announcement(s.ns, pod, r.address))).toBe("pending");
    held.remove();
    release();
    const got = await reply;
    expect({ status: got.status, body: got.body }).toEqual({ status: 200, body: "pod:/invoke/x" });
  });

  it("never routes to an address whose runner names another pod, nor on an announcement with another UID", async () => {
    const s = await scene(2500);
    const reply = coldRequest(s);
    const pod = await createPod(s.ns, s.fn);
    await new Promise((res) => setTimeout(res, 200));
    // A runner that answers /readyz 200, but as another pod.
    const impostor = await runner("00000000-0000-0000-0000-000000000000");
    expect(s.backend.announce(announcement(s.ns, pod, impostor.address))).toBe("accepted");
    // The right address with a UID the pod does not have: refused outright.
    expect(s.backend.announce(announcement(s.ns, pod, impostor.address, "11111111-2222-3333-4444-555555555555"))).toBe(
      "mismatch",
    );
    const got = await reply;
    expect(got.status).toBe(504);
    expect(got.body).not.toContain("pod:");
  });

  it("an announcement its pod's status contradicts is refused, and one for a namespace not served", async () => {
    const s = await scene();
    const pod = await createPod(s.ns, s.fn);
    await admin.mergePatch(
      { ...RESOURCES.pods, namespace: s.ns, name: pod.metadata.name, subresource: "status" },
      { status: { podIP: "10.254.255.254", podIPs: [{ ip: "10.254.255.254" }] } },
      FIELD_MANAGER,
    );
    await new Promise((res) => setTimeout(res, 300));
    expect(s.backend.announce(announcement(s.ns, pod, "10.254.255.1"))).toBe("mismatch");
    expect(s.backend.announce(announcement(`${s.ns}x`, pod, "10.254.255.1"))).toBe("not-served");
  });
});
