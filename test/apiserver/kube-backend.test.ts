/**
 * The Kubernetes backend inside a real gateway, against a real API server
 * whose answers a proxy reorders, fails and cuts. Each case starts a gateway
 * in its own namespace with a warm function (Function, Deployment at 1, a
 * ready EndpointSlice pointing at a local fake runner) and checks that the
 * first request is served by the replica, with no scale call.
 */

import { newApiKey } from "@faas/api";
import { type BackendListener, createLogger, DEFAULT_GATEWAY_CONFIG, Gateway, type LoadView } from "@faas/gateway";
import { type KubeClient, storeApiKey } from "@faas/kube";
import { KubeBackend, NamespacedBackend } from "@faas/kube-backend";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call } from "../support/http.js";
import { on } from "./fault-proxy.js";
import { ApiServer, apiServerSkipReason } from "./fixture.js";
import { podHostMissing, startFakeRunner } from "./pod-host.js";
import {
  createDeployment,
  createFunction,
  createNamespace,
  createWarmFunction,
  eventually,
  putSlice,
  randomName,
} from "./scene.js";

const skip = apiServerSkipReason() ?? podHostSkipReason();

/** Fake pods live in network namespaces: root and iproute2, or a printed skip (a failure on CI). */
function podHostSkipReason(): string | undefined {
  const missing = podHostMissing();
  if (missing === undefined) return undefined;
  if (process.env.FAAS_REQUIRE_APISERVER === "1") throw new Error(`API-server tests required, but ${missing}`);
  console.log(`skipping the Kubernetes backend's API-server tests: ${missing}`);
  return missing;
}
/** The warm pool has its own tests; here the Deployment path alone. */
const NO_POOL = { enabled: false, specializeTimeoutMs: 5000, maxAttempts: 1 };
const log = createLogger(process.env.FAAS_TEST_LOG ?? "silent", "test-gateway");

interface Harness {
  ns: string;
  gateway: Gateway;
  backend: KubeBackend;
  client: KubeClient;
  started: Promise<void>;
  stop(): Promise<void>;
}

describe.skipIf(skip !== undefined)("Kubernetes backend against a real API server", () => {
  let api: ApiServer;
  let admin: KubeClient;
  let runner: Awaited<ReturnType<typeof startFakeRunner>>;
  const harnesses: Harness[] = [];

  beforeAll(async () => {
    api = await ApiServer.start();
    admin = api.directClient();
    runner = await startFakeRunner();
  }, 60_000);
  afterAll(async () => {
    for (const h of harnesses) await h.stop();
    await runner?.close();
    await api?.stop();
  });

  /** A gateway on port 0 whose backend talks to the API server through the proxy. */
  function startGateway(ns: string, parkTimeoutMs = 4000, coldApiTimeoutMs?: number): Harness {
    const client = api.client();
    const backend = new KubeBackend(
      client,
      {
        namespace: ns,
        coldApiTimeoutMs,
        scaleUpTimeoutMs: 10_000,
        activityTickMs: 250,
        routingCheckMs: 100,
        routingGraceMs: 500,
        pool: NO_POOL,
      },
      log,
    );
    const gateway = new Gateway({ ...DEFAULT_GATEWAY_CONFIG, port: 0, parkTimeoutMs }, backend, log, {
      defaultMetrics: false,
    });
    const started = gateway.start();
    started.catch(() => {});
    const h: Harness = { ns, gateway, backend, client, started, stop: () => gateway.stop() };
    harnesses.push(h);
    return h;
  }

  /** A gateway over NamespacedBackend: a backend per namespace, all through the proxy. */
  function namespacedGateway(
    defaultNamespace: string,
    namespaces: string[] | "*",
  ): { backend: NamespacedBackend; gateway: Gateway } {
    const client = api.client();
    const backendFor = (namespace: string): KubeBackend =>
      new KubeBackend(
        client,
        {
          namespace,
          scaleUpTimeoutMs: 10_000,
          activityTickMs: 250,
          routingCheckMs: 100,
          routingGraceMs: 500,
          pool: NO_POOL,
        },
        log,
      );
    const backend = new NamespacedBackend(client, { defaultNamespace, namespaces, backendFor, log });
    const gateway = new Gateway({ ...DEFAULT_GATEWAY_CONFIG, port: 0, parkTimeoutMs: 10_000 }, backend, log, {
      defaultMetrics: false,
    });
    return { backend, gateway };
  }

  const scalePatches = (ns: string): number =>
    api.proxy.count(on({ verb: "patch", resource: "deployments/scale", namespace: ns }));

  async function expectServed(h: Harness, fn: string): Promise<void> {
    const started = performance.now();
    const r = await call(`${h.gateway.url}/invoke/${fn}/x`);
    expect({ status: r.status, body: r.body }).toEqual({ status: 200, body: "pod:/invoke/x" });
    // A replica that is already ready answers at once; a lost endpoint would wait out the park timeout.
    expect(performance.now() - started).toBeLessThan(2000);
  }

  describe("start-up: whatever order the lists land in, warm functions are served at once", () => {
    const hold = (ns: string, first: string, then: string): void => {
      let release!: () => void;
      api.proxy.fault(
        on({ verb: "list", resource: then, namespace: ns }),
        {
          kind: "hold",
          until: new Promise<void>((r) => {
            release = r;
          }),
        },
        1,
      );
      // The reflector watches only after it has listed and told its listeners: then the other list may land.
      void api.proxy.waitFor(on({ verb: "watch", resource: first, namespace: ns }), 1).then(() => release());
    };
    const cases: { name: string; arrange(ns: string): void }[] = [
      { name: "lists answered as they come", arrange: () => {} },
      { name: "EndpointSlices listed before Functions", arrange: (ns) => hold(ns, "endpointslices", "functions") },
      { name: "Functions listed before EndpointSlices", arrange: (ns) => hold(ns, "functions", "endpointslices") },
      {
        name: "the first Function list fails (429)",
        arrange: (ns) =>
          api.proxy.fault(on({ verb: "list", resource: "functions", namespace: ns }), { kind: "fail", status: 429 }, 1),
      },
      {
        name: "every first list fails twice (500)",
        arrange: (ns) => api.proxy.fault(on({ verb: "list", namespace: ns }), { kind: "fail", status: 500 }, 6),
      },
      {
        name: "the first EndpointSlice list is reset",
        arrange: (ns) =>
          api.proxy.fault(on({ verb: "list", resource: "endpointslices", namespace: ns }), { kind: "reset" }, 1),
      },
    ];
    for (const c of cases) {
      it(c.name, async () => {
        const ns = await createNamespace(admin);
        const fn = randomName("warm");
        await createWarmFunction(admin, ns, fn, runner);
        c.arrange(ns);
        const h = startGateway(ns);
        await expect(withTimeout(h.started, 10_000, "gateway start")).resolves.toBeUndefined();
        expect((await call(`${h.gateway.url}/readyz`)).status).toBe(200);
        await expectServed(h, fn);
        expect(scalePatches(ns)).toBe(0);
      }, 30_000);
    }
  });

  it("learns a function whose EndpointSlice was watched before the Function itself", async () => {
    const ns = await createNamespace(admin);
    const h = startGateway(ns);
    await h.started;
    const fn = randomName("late");
    const sliceWatch = on({ verb: "watch", resource: "endpointslices", namespace: ns });
    await api.proxy.waitFor(sliceWatch, 1);
    await putSlice(admin, ns, fn, [{ name: `${fn}-pod`, address: runner.address, port: runner.port }]);
    await createDeployment(admin, ns, fn, 1);
    // Let the slice's watch event be handled while the Function does not exist yet.
    await new Promise((r) => setTimeout(r, 300));
    // Delivered on the watch, not by a relist.
    expect(api.proxy.count(sliceWatch)).toBe(1);
    expect(api.proxy.count(on({ verb: "list", resource: "endpointslices", namespace: ns }))).toBe(1);
    await createFunction(admin, ns, fn);
    await eventually(() => h.backend.getFunction(fn) !== undefined, 5000, "the gateway sees the Function");
    await expectServed(h, fn);
    expect(scalePatches(ns)).toBe(0);
  }, 30_000);

  describe("after start-up: the caches recover from broken watches", () => {
    const cases: { name: string; disrupt(ns: string): Promise<void>; relistReason?: string }[] = [
      {
        name: "watches cut mid-stream",
        disrupt: async (ns) => {
          expect(api.proxy.cutWatches(on({ namespace: ns }))).toBeGreaterThanOrEqual(3);
        },
      },
      {
        name: "watches answered 410 Gone (resourceVersion too old)",
        relistReason: "expired",
        disrupt: async (ns) => {
          api.proxy.fault(on({ verb: "watch", namespace: ns }), { kind: "expire" }, 3);
          api.proxy.cutWatches(on({ namespace: ns }));
        },
      },
      {
        name: "watches refused (500) several times",
        disrupt: async (ns) => {
          api.proxy.fault(on({ verb: "watch", namespace: ns }), { kind: "fail", status: 500 }, 9);
          api.proxy.cutWatches(on({ namespace: ns }));
        },
      },
      {
        name: "the API server restarts",
        disrupt: async () => {
          await api.restartApiServer({ downMs: 500 });
        },
      },
    ];
    for (const c of cases) {
      it(c.name, async () => {
        const ns = await createNamespace(admin);
        const warm = randomName("warm");
        await createWarmFunction(admin, ns, warm, runner);
        const h = startGateway(ns);
        await h.started;
        await expectServed(h, warm);
        // Something happens on the watches first, so the cut lands mid-stream.
        await putSlice(admin, ns, warm, [
          { name: `${warm}-pod`, address: runner.address, port: runner.port },
          { name: `${warm}-pod2`, address: runner.address, port: runner.port },
        ]);
        await eventually(() => h.backend.status(warm)?.readyReplicas === 2, 5000, "second replica seen");
        const relists = await counterValue(h.client, "relists", c.relistReason);
        await c.disrupt(ns);
        // Warm traffic goes on from the caches meanwhile.
        await expectServed(h, warm);
        const added = randomName("added");
        await createWarmFunction(admin, ns, added, runner);
        await eventually(() => h.backend.status(added)?.readyReplicas === 1, 15_000, "the new function's replica seen");
        await expectServed(h, added);
        expect(h.backend.status(warm)?.readyReplicas).toBe(2);
        expect(scalePatches(ns)).toBe(0);
        if (c.relistReason) expect(await counterValue(h.client, "relists", c.relistReason)).toBeGreaterThan(relists);
      }, 40_000);
    }
  });

  it("a cold start sends one scale patch however many requests wait, and resolves when a replica is ready", async () => {
    const ns = await createNamespace(admin);
    const fn = randomName("cold");
    await createFunction(admin, ns, fn);
    await createDeployment(admin, ns, fn, 0);
    const h = startGateway(ns, 10_000);
    await h.started;
    const replies = Promise.all(Array.from({ length: 20 }, () => call(`${h.gateway.url}/invoke/${fn}/x`)));
    // Play the Deployment controller and kubelet: a ready pod once the scale was asked for.
    await api.proxy.waitFor(on({ verb: "patch", resource: "deployments/scale", namespace: ns }), 1);
    await new Promise((r) => setTimeout(r, 200));
    await putSlice(admin, ns, fn, [{ name: `${fn}-pod`, address: runner.address, port: runner.port }]);
    const answers = await replies;
    expect(answers.map((r) => r.status)).toEqual(Array(20).fill(200));
    expect(scalePatches(ns)).toBe(1);
    expect(api.proxy.count(on({ verb: "get", resource: "deployments/scale", namespace: ns }))).toBe(1);
    // Every API call is counted by verb, resource and code, and served in /metrics.
    const metrics = (await call(`${h.gateway.url}/metrics`)).body;
    expect(metrics).toMatch(/faas_kube_api_requests_total\{verb="patch",resource="deployments\/scale",code="200"\} 1/);
  }, 30_000);

  it("an API server that stops answering: cold starts fail fast with 503 SCALE_UP_FAILED, then recover on their own", async () => {
    const ns = await createNamespace(admin);
    const fn = randomName("frozen");
    await createFunction(admin, ns, fn);
    await createDeployment(admin, ns, fn, 0);
    const h = startGateway(ns, 30_000, 1000);
    await h.started;
    // From now on the API server takes requests and never answers them (as when it is stopped):
    // everything of this namespace, and its health endpoint.
    let thaw!: () => void;
    const frozen = api.proxy.fault((r) => r.namespace === ns || r.path.startsWith("/readyz"), {
      kind: "hold",
      until: new Promise<void>((r) => (thaw = r)),
    });
    try {
      // The first cold call finds out: its scale request has 1 s.
      let t0 = performance.now();
      const first = await call(`${h.gateway.url}/invoke/${fn}/x`);
      const firstMs = performance.now() - t0;
      expect(first.status).toBe(503);
      expect(JSON.parse(first.body).error.code).toBe("SCALE_UP_FAILED");
      expect(JSON.parse(first.body).error.message).toMatch(/did not answer/);
      expect(firstMs).toBeLessThan(3000);
      // The next ones know already: a 1 s ping, then the same clear answer.
      t0 = performance.now();
      const second = await call(`${h.gateway.url}/invoke/${fn}/x`);
      const secondMs = performance.now() - t0;
      expect(second.status).toBe(503);
      expect(JSON.parse(second.body).error.message).toMatch(/has not answered for [\d.]+ s/);
      expect(secondMs).toBeLessThan(3000);
      console.log(
        `apiserver/frozen: first cold call 503 after ${firstMs.toFixed(0)} ms, the next after ${secondMs.toFixed(0)} ms`,
      );
    } finally {
      frozen.remove();
      thaw();
    }
    // Back: the next cold call scales up and is served, with nothing to reset by hand.
    const served = call(`${h.gateway.url}/invoke/${fn}/x`);
    await api.proxy.waitFor(on({ verb: "patch", resource: "deployments/scale", namespace: ns }), 1);
    await putSlice(admin, ns, fn, [{ name: `${fn}-pod`, address: runner.address, port: runner.port }]);
    const back = await served;
    expect({ status: back.status, body: back.body }).toEqual({ status: 200, body: "pod:/invoke/x" });
  }, 30_000);

  it("one gateway, two namespaces: the same name answers from each, /invoke/<namespace>/<name>, cold starts and metrics per namespace", async () => {
    const nsA = await createNamespace(admin);
    const nsB = await createNamespace(admin);
    const fn = randomName("same");
    const cold = randomName("cold");
    const runnerB = await startFakeRunner();
    const { gateway } = namespacedGateway(nsA, [nsA, nsB]);
    try {
      await createWarmFunction(admin, nsA, fn, runner);
      await createWarmFunction(admin, nsB, fn, runnerB);
      await createFunction(admin, nsB, cold);
      await createDeployment(admin, nsB, cold, 0);
      await gateway.start();
      const a = await call(`${gateway.url}/invoke/${fn}/x`);
      expect({ status: a.status, body: a.body, pod: a.headers["x-pod"] }).toEqual({
        status: 200,
        body: "pod:/invoke/x",
        pod: runner.address,
      });
      const b = await call(`${gateway.url}/invoke/${nsB}/${fn}/x?q=1`);
      expect({ status: b.status, body: b.body, pod: b.headers["x-pod"] }).toEqual({
        status: 200,
        body: "pod:/invoke/x?q=1",
        pod: runnerB.address,
      });
      // A cold start in namespace B patches B's Deployment, and nothing in A.
      const served = call(`${gateway.url}/invoke/${nsB}/${cold}`);
      await api.proxy.waitFor(on({ verb: "patch", resource: "deployments/scale", namespace: nsB }), 1);
      await putSlice(admin, nsB, cold, [{ name: `${cold}-pod`, address: runnerB.address, port: runnerB.port }]);
      expect((await served).status).toBe(200);
      expect(api.proxy.count(on({ verb: "patch", resource: "deployments/scale", namespace: nsA }))).toBe(0);
      // The same name is not found in a namespace that has no such function.
      expect((await call(`${gateway.url}/invoke/${cold}`)).status).toBe(404);
      // API keys come from the function's own namespace.
      const locked = randomName("locked");
      const lockedFn = await createFunction(admin, nsB, locked, { auth: "apiKey" });
      await createDeployment(admin, nsB, locked, 1);
      await putSlice(admin, nsB, locked, [{ name: `${locked}-pod`, address: runnerB.address, port: runnerB.port }]);
      const key = newApiKey(locked, { functionUid: lockedFn.metadata.uid });
      await storeApiKey(admin, nsB, key.record);
      await eventually(
        async () =>
          (await call(`${gateway.url}/invoke/${nsB}/${locked}`, { headers: { "x-faas-key": key.key } })).status === 200,
        10_000,
        "the key of a function in the second namespace to be accepted",
      );
      expect((await call(`${gateway.url}/invoke/${nsB}/${locked}`)).status).toBe(401);
      const wrong = newApiKey(locked);
      expect(
        (await call(`${gateway.url}/invoke/${nsB}/${locked}`, { headers: { "x-faas-key": wrong.key } })).status,
      ).toBe(403);
      const metrics = (await call(`${gateway.url}/metrics`)).body;
      expect(metrics).toContain(`faas_scale_patches_total{function="${cold}",namespace="${nsB}"} 1`);
      expect(metrics).toContain(`faas_pool_idle_pods{runtime="python",namespace="${nsA}"} 0`);
      expect(metrics).toMatch(
        /faas_kube_api_requests_total\{verb="patch",resource="deployments\/scale",code="200"\} 1/,
      );
      expect(metrics).toContain(`faas_requests_total{function="${nsB}/${fn}"`);
    } finally {
      await gateway.stop();
      await runnerB.close();
    }
  }, 30_000);

  it("serving all namespaces: a namespace's first Function, created after the start, is served", async () => {
    const nsA = await createNamespace(admin);
    const nsB = await createNamespace(admin);
    const fn = randomName("late");
    const { backend, gateway } = namespacedGateway(nsA, "*");
    try {
      await gateway.start();
      expect((await call(`${gateway.url}/readyz`)).status).toBe(200);
      expect((await call(`${gateway.url}/invoke/${nsB}/${fn}`)).status).toBe(404);
      await createWarmFunction(admin, nsB, fn, runner);
      await eventually(() => backend.namespaces.includes(nsB), 5000, `${nsB} served`);
      await eventually(
        async () => (await call(`${gateway.url}/invoke/${nsB}/${fn}/x`)).status === 200,
        10_000,
        `${nsB}/${fn} answering`,
      );
      const r = await call(`${gateway.url}/invoke/${nsB}/${fn}/x`);
      expect({ status: r.status, body: r.body }).toEqual({ status: 200, body: "pod:/invoke/x" });
      expect((await call(`${gateway.url}/metrics`)).body).toContain(
        `faas_pool_idle_pods{runtime="python",namespace="${nsB}"} 0`,
      );
    } finally {
      await gateway.stop();
    }
  }, 30_000);

  it("scale-ups asked again and again while the gateway routes to nothing: re-announced, slowed down, no scale call", async () => {
    const ns = await createNamespace(admin);
    const fn = randomName("spin");
    await createWarmFunction(admin, ns, fn, { address: runner.address, port: 8080 });
    // A listener that loses every announcement, and a caller that asks again at once, as the
    // activator did when it missed the endpoints: this was a busy loop of API calls.
    const heard: number[] = [];
    const listener: BackendListener = {
      endpointsChanged: (_n, eps) => void heard.push(eps.length),
      functionChanged: () => {},
    };
    const load: LoadView = {
      inFlight: () => 0,
      queued: () => 1,
      lastActivityMs: () => 0,
      endpointInFlight: () => 0,
      routableEndpoints: () => 0,
    };
    const backend = new KubeBackend(
      api.client(),
      {
        namespace: ns,
        scaleUpTimeoutMs: 5000,
        activityTickMs: 60_000,
        // Out of the way: this test is about scaleUp's own answer to repeats.
        routingCheckMs: 60_000,
        scaleBackoffBaseMs: 20,
        scaleBackoffMaxMs: 1000,
        pool: NO_POOL,
      },
      log,
    );
    await backend.start(listener, load);
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 10);
    try {
      const heardBefore = heard.length;
      const t0 = performance.now();
      for (let i = 0; i < 6; i++) await backend.scaleUp(fn, 1);
      const elapsed = performance.now() - t0;
      // Repeats wait 20, 40, 80, 160, 320 ms: the event loop runs meanwhile.
      expect(elapsed).toBeGreaterThanOrEqual(600);
      expect(ticks).toBeGreaterThan(10);
      // Each repeat told the gateway its endpoints again.
      expect(heard.length - heardBefore).toBeGreaterThanOrEqual(6);
      expect(heard.at(-1)).toBe(1);
      expect(api.proxy.count(on({ resource: "deployments/scale", namespace: ns }))).toBe(0);
      expect(api.proxy.count(on({ verb: "patch", resource: "functions", namespace: ns }))).toBe(0);
    } finally {
      clearInterval(ticker);
      await backend.stop();
    }
  }, 20_000);

  it("a ready replica the gateway does not route to is logged, counted, reported by ready() and healed", async () => {
    const ns = await createNamespace(admin);
    const fn = randomName("lost");
    await createWarmFunction(admin, ns, fn, { address: runner.address, port: 8080 });
    // A listener that loses announcements until told otherwise: the bug class the check is for.
    let deaf = true;
    const routable = new Map<string, number>();
    const heard: number[] = [];
    const listener: BackendListener = {
      endpointsChanged: (name, eps) => {
        heard.push(eps.length);
        if (!deaf) routable.set(name, eps.length);
      },
      functionChanged: () => {},
    };
    const load: LoadView = {
      inFlight: () => 0,
      queued: () => 0,
      lastActivityMs: () => 0,
      endpointInFlight: () => 0,
      routableEndpoints: (name) => routable.get(name) ?? 0,
    };
    const client = api.client();
    const lines: string[] = [];
    const capture = pino({ level: "error" }, { write: (line: string) => void lines.push(line) });
    const backend = new KubeBackend(
      client,
      {
        namespace: ns,
        scaleUpTimeoutMs: 5000,
        activityTickMs: 60_000,
        routingCheckMs: 50,
        routingGraceMs: 300,
        pool: NO_POOL,
      },
      capture,
    );
    const registry = new Registry();
    backend.registerMetrics(registry);
    await backend.start(listener, load);
    try {
      expect(heard.at(-1)).toBe(1);
      await eventually(() => !backend.ready(), 3000, "ready() turns false");
      const announced = heard.length;
      expect(lines.join("")).toContain("not routable in the gateway");
      // Healing announces again (and relists): once the listener hears, the invariant holds.
      deaf = false;
      await eventually(() => backend.ready(), 3000, "ready() true again after a heal");
      expect(routable.get(fn)).toBe(1);
      expect(heard.length).toBeGreaterThan(announced);
      const violations = (await registry.getSingleMetric("faas_routing_inconsistencies_total")?.get())?.values ?? [];
      expect(violations.reduce((a, v) => a + v.value, 0)).toBeGreaterThanOrEqual(1);
    } finally {
      await backend.stop();
    }
  }, 20_000);
});

async function counterValue(
  client: KubeClient,
  name: "relists" | "requests" | "handlerErrors",
  reason?: string,
): Promise<number> {
  const { values } = await client.metrics[name].get();
  return values
    .filter((v) => reason === undefined || (v.labels as Record<string, unknown>).reason === reason)
    .reduce((a, v) => a + v.value, 0);
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
    }),
  ]);
}
