import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import {
  type ApiKeyRecord,
  FaasError,
  type FunctionResource,
  type FunctionSpecInput,
  makeFunction,
  newApiKey,
} from "@faas/api";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { call, metricValue, rawRequest } from "../../../test/support/http.js";
import type {
  Backend,
  BackendListener,
  Endpoint,
  FunctionStatus,
  KeyLookup,
  LoadView,
  ScaleUpResult,
} from "./backend.js";
import { DEFAULT_GATEWAY_CONFIG, type GatewayConfig } from "./config.js";
import { Gateway } from "./gateway.js";
import { createLogger } from "./logger.js";

/** A backend whose replicas are plain HTTP servers started by the test. */
class TestBackend implements Backend {
  readonly kind = "test";
  listener!: BackendListener;
  load!: LoadView;
  readonly fns = new Map<string, FunctionResource>();
  readonly endpoints = new Map<string, Endpoint[]>();
  scaleUpCalls: { fn: string; replicas: number }[] = [];
  failed: { fn: string; id: string; reason: string }[] = [];
  onScaleUp: (fn: string, replicas: number) => Promise<ScaleUpResult> = () => new Promise(() => {});
  /** API key records by id, as a key store would hold them. */
  readonly apiKeys = new Map<string, ApiKeyRecord>();
  readonly keys: KeyLookup = {
    apiKey: (fn, id) => {
      const r = this.apiKeys.get(id);
      return r?.function === fn ? r : undefined;
    },
    apiKeyCount: (fn) => [...this.apiKeys.values()].filter((r) => r.function === fn).length,
  };

  /** Namespaces other than the default one, whose functions are keyed `<namespace>/<name>`. */
  readonly namespaces = new Set<string>();

  add(name: string, spec: Partial<FunctionSpecInput> = {}): void {
    // As a namespaced backend does: the key is the name the gateway sees.
    const slash = name.indexOf("/");
    const fn = makeFunction(name.slice(slash + 1), { runtime: "python", code: "x", ...spec });
    if (slash > 0) {
      this.namespaces.add(name.slice(0, slash));
      fn.metadata = { ...fn.metadata, name, namespace: name.slice(0, slash) };
    }
    this.fns.set(name, fn);
  }
  servesNamespace(ns: string): boolean {
    return this.namespaces.has(ns);
  }
  announce(fn: string, eps: Endpoint[]): void {
    this.endpoints.set(fn, eps);
    this.listener.endpointsChanged(fn, eps);
  }
  async start(listener: BackendListener, load: LoadView): Promise<void> {
    this.listener = listener;
    this.load = load;
  }
  async stop(): Promise<void> {}
  getFunction(name: string) {
    return this.fns.get(name);
  }
  listFunctions() {
    return [...this.fns.values()];
  }
  status(name: string): FunctionStatus | undefined {
    const fn = this.fns.get(name);
    if (!fn) return undefined;
    const n = this.endpoints.get(name)?.length ?? 0;
    return {
      name,
      runtime: fn.spec.runtime,
      readyReplicas: n,
      desiredReplicas: n,
      minReplicas: 0,
      maxReplicas: fn.spec.maxReplicas,
    };
  }
  scaleUp(fn: string, replicas: number): Promise<ScaleUpResult> {
    this.scaleUpCalls.push({ fn, replicas });
    return this.onScaleUp(fn, replicas);
  }
  endpointFailed(fn: string, id: string, reason: string): void {
    this.failed.push({ fn, id, reason });
  }
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function replica(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ server: Server; endpoint: Endpoint; port: number }> {
  const server = createServer({ keepAliveTimeout: 75_000 }, handler);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanups.push(() => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  const port = (server.address() as AddressInfo).port;
  return { server, port, endpoint: { id: `r-${port}`, host: "127.0.0.1", port } };
}

const hello = (req: IncomingMessage, res: ServerResponse): void => {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    res.setHeader("content-type", "application/json");
    res.end(
      JSON.stringify({
        method: req.method,
        url: req.url,
        body: Buffer.concat(chunks).toString(),
        h: req.headers["x-test"],
      }),
    );
  });
};

async function startGateway(backend: TestBackend, cfg: Partial<GatewayConfig> = {}): Promise<Gateway> {
  const gw = new Gateway({ ...DEFAULT_GATEWAY_CONFIG, port: 0, ...cfg }, backend, pino({ level: "silent" }), {
    defaultMetrics: false,
  });
  await gw.start();
  cleanups.push(() => gw.stop());
  return gw;
}

describe("gateway", () => {
  it("answers 404 JSON for an unknown function", async () => {
    const gw = await startGateway(new TestBackend());
    const r = await call(`${gw.url}/invoke/nope`);
    expect(r.status).toBe(404);
    expect(r.json()).toMatchObject({ error: { code: "FUNCTION_NOT_FOUND" } });
  });

  it("streams method, path, query, headers and body to a replica", async () => {
    const b = new TestBackend();
    b.add("f");
    const gw = await startGateway(b);
    const rep = await replica(hello);
    b.announce("f", [rep.endpoint]);
    const r = await call(`${gw.url}/invoke/f/a/b?x=1`, {
      method: "PUT",
      body: "payload",
      headers: { "x-test": "yes" },
    });
    expect(r.status).toBe(200);
    expect(r.json()).toEqual({ method: "PUT", url: "/invoke/a/b?x=1", body: "payload", h: "yes" });
    expect(r.headers["x-faas-cold-start"]).toBeUndefined();
  });

  it("parks a burst at zero replicas and triggers exactly one scale-up", async () => {
    const b = new TestBackend();
    b.add("f", { concurrency: 1000 });
    const gw = await startGateway(b);
    const rep = await replica(hello);
    b.onScaleUp = async () => {
      await new Promise((r) => setTimeout(r, 100));
      b.announce("f", [rep.endpoint]);
      return {
        steps: [
          { name: "scaleup", ms: 60 },
          { name: "specialize", ms: 40 },
        ],
      };
    };
    const replies = await Promise.all(Array.from({ length: 1000 }, () => call(`${gw.url}/invoke/f`)));
    expect(replies.filter((r) => r.status === 200)).toHaveLength(1000);
    expect(b.scaleUpCalls).toEqual([{ fn: "f", replicas: 1 }]);
    const cold = replies[0];
    expect(cold?.headers["x-faas-cold-start"]).toBe("true");
    expect(cold?.headers["server-timing"]).toMatch(/parked;dur=\d+\.\d+, scaleup;dur=60\.00, specialize;dur=40\.00/);
    const metrics = (await call(`${gw.url}/metrics`)).body;
    expect(metricValue(metrics, "faas_cold_starts_total", { function: "f" })).toBe(1);
    expect(metricValue(metrics, "faas_requests_total", { function: "f", code: "200" })).toBe(1000);
    expect(metricValue(metrics, "faas_request_duration_seconds_count", { function: "f" })).toBe(1000);
    expect(metricValue(metrics, "faas_request_duration_seconds_bucket", { function: "f", le: "+Inf" })).toBe(1000);
    expect(metricValue(metrics, "faas_request_duration_seconds_bucket", { function: "f", le: "0.0005" })).toBeLessThan(
      1000,
    );
  });

  it("refuses parking past the per-function bound with 503 and Retry-After", async () => {
    const b = new TestBackend();
    b.add("f");
    const gw = await startGateway(b, { maxParkedPerFunction: 3, parkTimeoutMs: 500 });
    const parked = Array.from({ length: 3 }, () => call(`${gw.url}/invoke/f`));
    await new Promise((r) => setTimeout(r, 50));
    const over = await call(`${gw.url}/invoke/f`);
    expect(over.status).toBe(503);
    expect(over.headers["retry-after"]).toBe("1");
    expect(over.json()).toMatchObject({ error: { code: "FUNCTION_BUSY" } });
    const timedOut = await Promise.all(parked);
    expect(timedOut.map((r) => r.status)).toEqual([504, 504, 504]);
  });

  it("refuses parking past the global bound", async () => {
    const b = new TestBackend();
    b.add("f");
    b.add("g");
    const gw = await startGateway(b, { maxParkedTotal: 2, parkTimeoutMs: 300 });
    const parked = [call(`${gw.url}/invoke/f`), call(`${gw.url}/invoke/g`)];
    await new Promise((r) => setTimeout(r, 50));
    const over = await call(`${gw.url}/invoke/g`);
    expect(over.status).toBe(503);
    expect(over.json()).toMatchObject({ error: { code: "GATEWAY_OVERLOADED" } });
    await Promise.all(parked);
  });

  it("routes /invoke/<namespace>/<name> to that namespace's function, and falls back to a default one", async () => {
    const b = new TestBackend();
    const [teamA, plain, deflt] = await Promise.all([
      replica((req, res) => res.end(`team-a/hello ${req.url}`)),
      replica((req, res) => res.end(`hello ${req.url}`)),
      replica((req, res) => res.end(`team-a (default namespace) ${req.url}`)),
    ]);
    b.add("hello");
    b.add("team-a/hello");
    b.add("team-a/other");
    b.add("team-a");
    const gw = await startGateway(b);
    b.announce("hello", [plain.endpoint]);
    b.announce("team-a/hello", [teamA.endpoint]);
    b.announce("team-a", [deflt.endpoint]);
    const body = async (path: string): Promise<string> => (await call(`${gw.url}${path}`)).body;
    expect(await body("/invoke/hello/x?q=1")).toBe("hello /invoke/x?q=1");
    expect(await body("/invoke/team-a/hello/x?q=1")).toBe("team-a/hello /invoke/x?q=1");
    expect(await body("/invoke/team-a/hello")).toBe("team-a/hello /invoke");
    // The key itself, percent-encoded into one segment, names the same function.
    expect(await body("/invoke/team-a%2Fhello/x")).toBe("team-a/hello /invoke/x");
    // No such function in team-a: the default namespace's function named like the namespace, with a sub-path.
    expect(await body("/invoke/team-a/nope")).toBe("team-a (default namespace) /invoke/nope");
    expect(await body("/invoke/team-a")).toBe("team-a (default namespace) /invoke");
    // A malformed second segment names no namespaced function: the default one gets it as its sub-path.
    expect(await body("/invoke/team-a/%E0%A4%A")).toBe("team-a (default namespace) /invoke/%E0%A4%A");
    expect(await body("/invoke/team-a//hello")).toBe("team-a (default namespace) /invoke//hello");
    // A namespace that is not served is a default-namespace function name, as always.
    expect((await call(`${gw.url}/invoke/team-b/hello`)).json()).toMatchObject({
      error: { code: "FUNCTION_NOT_FOUND" },
    });
  });

  it("bounds parking per namespace: one namespace's burst leaves the others room", async () => {
    const b = new TestBackend();
    b.add("a/f");
    b.add("a/g");
    b.add("b/f");
    b.add("f");
    const gw = await startGateway(b, { maxParkedPerNamespace: 2, maxParkedTotal: 10, parkTimeoutMs: 300 });
    const parked = [call(`${gw.url}/invoke/a/f`), call(`${gw.url}/invoke/a/g`)];
    await new Promise((r) => setTimeout(r, 50));
    const over = await call(`${gw.url}/invoke/a/f`);
    expect(over.status).toBe(503);
    expect(over.json()).toMatchObject({
      error: { code: "GATEWAY_OVERLOADED", message: expect.stringMatching(/^namespace a /) },
    });
    // Namespace b and the default namespace still park (and time out: nothing serves them here).
    const others = await Promise.all([call(`${gw.url}/invoke/b/f`), call(`${gw.url}/invoke/f`)]);
    expect(others.map((r) => r.status)).toEqual([504, 504]);
    expect((await Promise.all(parked)).map((r) => r.status)).toEqual([504, 504]);
    // Released: namespace a parks again.
    expect((await call(`${gw.url}/invoke/a/f`)).status).toBe(504);
  });

  it("serves /metrics on its own port when one is set, and not on the main one", async () => {
    const free = await new Promise<number>((resolve) => {
      const probe = createServer();
      probe.listen(0, "127.0.0.1", () => {
        const port = (probe.address() as AddressInfo).port;
        probe.close(() => resolve(port));
      });
    });
    const b = new TestBackend();
    b.add("f");
    const gw = await startGateway(b, { metricsPort: free });
    const main = await call(`${gw.url}/metrics`);
    expect(main.status).toBe(404);
    const scraped = await call(`http://127.0.0.1:${free}/metrics`);
    expect(scraped.status).toBe(200);
    expect(scraped.body).toContain("# TYPE faas_requests_total counter");
    expect((await call(`http://127.0.0.1:${free}/invoke/f`)).status).toBe(404);
    expect((await call(`${gw.url}/healthz`)).status).toBe(200);
  });

  it("honours a client's shorter deadline with 504", async () => {
    const b = new TestBackend();
    b.add("f");
    const gw = await startGateway(b);
    const t0 = performance.now();
    const r = await call(`${gw.url}/invoke/f`, { headers: { "x-faas-deadline-ms": "150" } });
    expect(r.status).toBe(504);
    expect(r.json()).toMatchObject({ error: { code: "DEADLINE_EXCEEDED" } });
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it("fails parked requests with the backend's error when scale-up fails", async () => {
    const b = new TestBackend();
    b.add("f");
    const gw = await startGateway(b);
    b.onScaleUp = async () => {
      throw new FaasError(
        "FUNCTION_LOAD_FAILED",
        "f: the code failed to load: SyntaxError: invalid syntax (main.py, line 1)",
      );
    };
    const replies = await Promise.all([call(`${gw.url}/invoke/f`), call(`${gw.url}/invoke/f`)]);
    for (const r of replies) {
      expect(r.status).toBe(500);
      expect(r.json()).toMatchObject({
        error: { code: "FUNCTION_LOAD_FAILED", message: expect.stringContaining("SyntaxError") },
      });
    }
  });

  it("sends parked requests to a replica announced as loading, with x-faas-await-load, and relays its answers at once, before the backend reports the load", async () => {
    const b = new TestBackend();
    b.add("f", { concurrency: 10 });
    const gw = await startGateway(b);
    const seen: (string | undefined)[] = [];
    // A runner that holds requests until the test says the load is done, then answers with its load time.
    let loadDone!: () => void;
    const loadedInRunner = new Promise<void>((r) => {
      loadDone = r;
    });
    const rep = await replica((req, res) => {
      seen.push(req.headers["x-faas-await-load"] as string | undefined);
      void loadedInRunner.then(() => {
        res.writeHead(200, { "content-type": "text/plain", "x-faas-load-ms": "7.5" });
        res.end("hello");
      });
    });
    let relayed!: () => void;
    const bothRelayed = new Promise<void>((r) => {
      relayed = r;
    });
    let settled!: () => void;
    const backendDone = new Promise<void>((r) => {
      settled = r;
    });
    b.onScaleUp = async () => {
      let resolveLoaded!: () => void;
      const loaded = new Promise<void>((r) => {
        resolveLoaded = r;
      });
      b.listener.endpointLoading?.("f", rep.endpoint, loaded, [{ name: "scaleup", ms: 1 }]);
      // The requests reach the runner while it loads.
      while (seen.length < 2) await new Promise((r) => setTimeout(r, 5));
      loadDone();
      // The backend reports the load only once the clients have their answers: a gateway that waited for it would hang here.
      await bothRelayed;
      b.announce("f", [rep.endpoint]);
      resolveLoaded();
      settled();
      return { steps: [{ name: "scaleup", ms: 1 }] };
    };
    const replies = await Promise.all([
      call(`${gw.url}/invoke/f`, { headers: { "x-faas-deadline-ms": "5000" } }),
      call(`${gw.url}/invoke/f`, { headers: { "x-faas-await-load": "someone 1" } }),
    ]);
    relayed();
    expect(replies.map((r) => r.status)).toEqual([200, 200]);
    // Named for the function, bounded by the request's own deadline; a client's own header never reaches a runner.
    expect(seen).toHaveLength(2);
    for (const h of seen) expect(h).toMatch(/^f \d+$/);
    expect(Math.min(...seen.map((h) => Number(h?.split(" ")[1])))).toBeLessThanOrEqual(5000);
    for (const r of replies) {
      expect(r.headers["x-faas-cold-start"]).toBe("true");
      // The steps as the replica's side saw them: the backend's claim, the load until this answer, the runner's import.
      expect(r.headers["server-timing"]).toMatch(
        /^parked;dur=\d+\.\d+, scaleup;dur=1\.00, specialize;dur=\d+\.\d+, import;dur=7\.50$/,
      );
      expect(r.headers["x-faas-load-ms"]).toBeUndefined(); // the runner's word to the gateway, not the client's
    }
    await backendDone;
    // Loaded: later requests go the usual way, without the header.
    const warm = await call(`${gw.url}/invoke/f`);
    expect([warm.status, warm.headers["x-faas-cold-start"], seen[2]]).toEqual([200, undefined, undefined]);
  });

  it("a load that fails: requests already sent to the loading replica get the load's error, as parked ones do", async () => {
    const b = new TestBackend();
    b.add("f", { concurrency: 1 });
    const gw = await startGateway(b);
    const loadError = new FaasError("FUNCTION_LOAD_FAILED", "f: the code failed to load: SyntaxError: bad (main.py)");
    let sent = 0;
    let refuse!: () => void;
    const failedInRunner = new Promise<void>((r) => {
      refuse = r;
    });
    // As a runner answers the invocations it held when the load fails.
    const rep = await replica((req, res) => {
      sent++;
      req.resume();
      void failedInRunner.then(() => {
        res.writeHead(503, { "content-type": "application/json", "x-faas-runner-state": "generic" });
        res.end(JSON.stringify({ error: { code: "RUNNER_NOT_SPECIALIZED", message: "the load failed: bad" } }));
      });
    });
    b.onScaleUp = async () => {
      let rejectLoaded!: (err: unknown) => void;
      const loaded = new Promise<void>((_, reject) => {
        rejectLoaded = reject;
      });
      b.listener.endpointLoading?.("f", rep.endpoint, loaded);
      while (sent < 1) await new Promise((r) => setTimeout(r, 5));
      refuse();
      rejectLoaded(loadError);
      throw loadError;
    };
    // One request goes to the loading replica (concurrency 1), the other stays parked.
    const replies = await Promise.all([call(`${gw.url}/invoke/f`), call(`${gw.url}/invoke/f`)]);
    for (const r of replies) {
      expect(r.status).toBe(500);
      expect(r.json()).toMatchObject({ error: { code: "FUNCTION_LOAD_FAILED", message: loadError.message } });
    }
    expect(sent).toBe(1);
  });

  it("a request sent to a loading replica that outlives its deadline there gets 504 DEADLINE_EXCEEDED", async () => {
    const b = new TestBackend();
    b.add("f");
    const gw = await startGateway(b);
    const rep = await replica((req, res) => {
      // As a runner answers once the x-faas-await-load wait has passed with no load done.
      const ms = Number(String(req.headers["x-faas-await-load"]).split(" ")[1]);
      req.resume();
      setTimeout(() => {
        res.writeHead(503, { "content-type": "application/json", "x-faas-runner-state": "generic" });
        res.end(JSON.stringify({ error: { code: "RUNNER_NOT_SPECIALIZED", message: "none was loaded" } }));
      }, ms);
    });
    b.onScaleUp = () => {
      b.listener.endpointLoading?.("f", rep.endpoint, new Promise<void>(() => {}));
      return new Promise(() => {});
    };
    const r = await call(`${gw.url}/invoke/f`, { headers: { "x-faas-deadline-ms": "200" } });
    expect(r.status).toBe(504);
    expect(r.json()).toMatchObject({
      error: { code: "DEADLINE_EXCEEDED", message: expect.stringContaining("200 ms") },
    });
  });

  it("limits bodies: 413 from Content-Length and from a chunked stream", async () => {
    const b = new TestBackend();
    b.add("f");
    const gw = await startGateway(b, { maxBodyBytes: 1000 });
    const rep = await replica(hello);
    b.announce("f", [rep.endpoint]);
    const declared = await call(`${gw.url}/invoke/f`, { body: "x".repeat(1001) });
    expect(declared.status).toBe(413);
    expect(declared.json()).toMatchObject({ error: { code: "BODY_TOO_LARGE" } });
    const chunked = await call(`${gw.url}/invoke/f`, {
      body: "y".repeat(300_000),
      chunked: true,
      headers: { "transfer-encoding": "chunked" },
    });
    expect(chunked.status).toBe(413);
    const ok = await call(`${gw.url}/invoke/f`, { body: "z".repeat(1000) });
    expect(ok.status).toBe(200);
  });

  it("never gives a replica more than `concurrency` requests at once", async () => {
    const b = new TestBackend();
    b.add("f", { concurrency: 2 });
    const gw = await startGateway(b);
    let now = 0;
    let peak = 0;
    const rep = await replica((req, res) => {
      now++;
      peak = Math.max(peak, now);
      setTimeout(() => {
        now--;
        res.end("ok");
      }, 30);
      req.resume();
    });
    b.announce("f", [rep.endpoint]);
    const replies = await Promise.all(Array.from({ length: 10 }, () => call(`${gw.url}/invoke/f`)));
    expect(replies.every((r) => r.status === 200)).toBe(true);
    expect(peak).toBe(2);
    expect(replies.some((r) => String(r.headers["server-timing"]).startsWith("parked;dur="))).toBe(true);
  });

  it("balances to the least-loaded replica", async () => {
    const b = new TestBackend();
    b.add("f", { concurrency: 10 });
    const gw = await startGateway(b);
    const seen = new Map<number, number>();
    const slow = (port: () => number) => (req: IncomingMessage, res: ServerResponse) => {
      seen.set(port(), (seen.get(port()) ?? 0) + 1);
      req.resume();
      setTimeout(() => res.end("ok"), 50);
    };
    let p1 = 0;
    let p2 = 0;
    const r1 = await replica(slow(() => p1));
    const r2 = await replica(slow(() => p2));
    p1 = r1.port;
    p2 = r2.port;
    b.announce("f", [r1.endpoint, r2.endpoint]);
    await Promise.all(Array.from({ length: 10 }, () => call(`${gw.url}/invoke/f`)));
    expect(seen.get(p1)).toBe(5);
    expect(seen.get(p2)).toBe(5);
  });

  it("retries a body-less request on another replica when a connection is refused", async () => {
    const b = new TestBackend();
    b.add("f");
    const gw = await startGateway(b);
    const good = await replica(hello);
    const dead = await replica(hello);
    await new Promise<void>((r) => dead.server.close(() => r()));
    b.announce("f", [dead.endpoint]);
    b.onScaleUp = async () => {
      b.announce("f", [good.endpoint]);
      return {
        steps: [
          { name: "scaleup", ms: 1 },
          { name: "specialize", ms: 1 },
        ],
      };
    };
    const r = await call(`${gw.url}/invoke/f`);
    expect(r.status).toBe(200);
    expect(b.failed).toEqual([{ fn: "f", id: dead.endpoint.id, reason: "ECONNREFUSED" }]);
  });

  it("answers 502 RUNNER_CRASHED when a replica dies mid-request with a body", async () => {
    const b = new TestBackend();
    b.add("f");
    const gw = await startGateway(b);
    const rep = await replica((req) => {
      req.resume();
      req.on("end", () => req.socket.destroy());
    });
    b.announce("f", [rep.endpoint]);
    const r = await call(`${gw.url}/invoke/f`, { body: "{}" });
    expect(r.status).toBe(502);
    expect(r.json()).toMatchObject({ error: { code: "RUNNER_CRASHED" } });
  });

  it("gives up on a replica that never answers: 504 after the function's timeout plus grace", async () => {
    const b = new TestBackend();
    b.add("f", { timeoutSeconds: 1 });
    const gw = await startGateway(b);
    const rep = await replica((req) => req.resume());
    b.announce("f", [rep.endpoint]);
    const t0 = performance.now();
    const r = await call(`${gw.url}/invoke/f`);
    const ms = performance.now() - t0;
    expect(r.status).toBe(504);
    expect(r.json()).toMatchObject({ error: { code: "HANDLER_TIMEOUT" } });
    expect(r.headers["x-faas-error"]).toBe("HANDLER_TIMEOUT");
    expect(ms).toBeGreaterThan(5500);
    expect(ms).toBeLessThan(9000);
  });

  it("stops routing to a replica that says it is draining", async () => {
    const b = new TestBackend();
    b.add("f");
    const gw = await startGateway(b);
    const rep = await replica((req, res) => {
      req.resume();
      res.writeHead(504, { "x-faas-runner-state": "draining" });
      res.end("{}");
    });
    b.announce("f", [rep.endpoint]);
    expect((await call(`${gw.url}/invoke/f`)).status).toBe(504);
    expect(b.failed).toEqual([{ fn: "f", id: rep.endpoint.id, reason: "draining" }]);
    expect(gw.activator.state("f")?.ready).toBe(0);
  });

  it("answers malformed HTTP with 400 and oversized headers with 431", async () => {
    const gw = await startGateway(new TestBackend());
    expect(await rawRequest(gw.port, "NOT HTTP AT ALL\r\n\r\n")).toMatch(/^HTTP\/1\.1 400/);
    const big = `GET /invoke/f HTTP/1.1\r\nhost: x\r\nx-big: ${"a".repeat(20_000)}\r\n\r\n`;
    expect(await rawRequest(gw.port, big)).toMatch(/^HTTP\/1\.1 431/);
  });

  it("cuts off a client that sends headers too slowly (408) without blocking others", async () => {
    const b = new TestBackend();
    b.add("f");
    const gw = await startGateway(b, { headersTimeoutMs: 300, requestTimeoutMs: 600 });
    const rep = await replica(hello);
    b.announce("f", [rep.endpoint]);
    const t0 = performance.now();
    const slow = rawRequest(gw.port, "GET /invoke/f HTTP/1.1\r\nhost: x\r\nx-slow: ", 10_000);
    expect((await call(`${gw.url}/invoke/f`)).status).toBe(200);
    const answer = await slow;
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
    expect(performance.now() - t0).toBeLessThan(5000);
  });

  it("keeps admin closed: 404 without a token configured, 401 with a wrong one", async () => {
    const open = await startGateway(new TestBackend());
    expect((await call(`${open.url}/admin/functions`)).status).toBe(404);
    const locked = await startGateway(new TestBackend(), { adminToken: "s3cret-token" });
    expect((await call(`${locked.url}/admin/functions`)).status).toBe(401);
    expect(
      (await call(`${locked.url}/admin/functions`, { headers: { authorization: "Bearer wrong-token!" } })).status,
    ).toBe(401);
    const ok = await call(`${locked.url}/admin/functions`, { headers: { authorization: "Bearer s3cret-token" } });
    expect(ok.status).toBe(200);
    expect(ok.json()).toEqual({ items: [] });
  });

  it("finishes an in-flight request when stopped", async () => {
    const b = new TestBackend();
    b.add("f");
    const gw = new Gateway({ ...DEFAULT_GATEWAY_CONFIG, port: 0 }, b, pino({ level: "silent" }), {
      defaultMetrics: false,
    });
    await gw.start();
    const rep = await replica((req, res) => {
      req.resume();
      setTimeout(() => res.end("late but fine"), 300);
    });
    b.announce("f", [rep.endpoint]);
    const pending = call(`${gw.url}/invoke/f`);
    await new Promise((r) => setTimeout(r, 50));
    const stopped = gw.stop();
    const r = await pending;
    await stopped;
    expect(r.status).toBe(200);
    expect(r.body).toBe("late but fine");
  });
});

describe("gateway: no request can stop it", () => {
  /** A gateway whose logs the test reads. */
  async function loggedGateway(b: TestBackend, cfg: Partial<GatewayConfig> = {}) {
    const lines: Record<string, unknown>[] = [];
    const log = pino({ level: "info" }, { write: (s: string) => lines.push(JSON.parse(s)) });
    const gw = new Gateway({ ...DEFAULT_GATEWAY_CONFIG, port: 0, ...cfg }, b, log, { defaultMetrics: false });
    await gw.start();
    cleanups.push(() => gw.stop());
    return { gw, lines };
  }

  it("answers a function name with malformed percent-encoding 400 BAD_REQUEST, and keeps serving", async () => {
    const b = new TestBackend();
    b.add("f");
    const gw = await startGateway(b);
    const rep = await replica(hello);
    b.announce("f", [rep.endpoint]);
    for (const bad of ["%E0%A4%A", "%", "%zz", "a%"]) {
      const r = await call(`${gw.url}/invoke/${bad}/rest?q=1`);
      expect(r.status).toBe(400);
      expect(r.json()).toEqual({
        error: { code: "BAD_REQUEST", message: expect.stringContaining(`function name "${bad}" is not valid`) },
      });
    }
    expect((await call(`${gw.url}/invoke/f`)).status).toBe(200);
  });

  it("answers 400 for malformed percent-encoding in an admin path", async () => {
    const gw = await startGateway(new TestBackend(), { adminToken: "s3cret-token" });
    const r = await call(`${gw.url}/admin/functions/%E0%A4%A`, { headers: { authorization: "Bearer s3cret-token" } });
    expect(r.status).toBe(400);
    expect(r.json()).toMatchObject({ error: { code: "BAD_REQUEST" } });
  });

  it("turns a bug on the invoke, admin or metrics path into 500 INTERNAL with a logged request id", async () => {
    const b = new TestBackend();
    b.add("f");
    const getFunction = b.getFunction.bind(b);
    b.getFunction = (name: string) => {
      if (name === "boom") throw new TypeError("backend bug");
      return getFunction(name);
    };
    b.status = () => {
      throw new RangeError("status bug");
    };
    const { gw, lines } = await loggedGateway(b, { adminToken: "s3cret-token" });
    const rep = await replica(hello);
    b.announce("f", [rep.endpoint]);
    const auth = { authorization: "Bearer s3cret-token" };
    const cases = [
      { url: `${gw.url}/invoke/boom`, bug: "backend bug" },
      { url: `${gw.url}/admin/functions/f`, bug: "status bug", headers: auth },
      // The replicas gauges ask the backend too.
      { url: `${gw.url}/metrics`, bug: "status bug" },
    ];
    for (const c of cases) {
      const r = await call(c.url, { headers: c.headers ?? {} });
      expect(r.status, c.url).toBe(500);
      const id = String(r.headers["x-faas-request-id"]);
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-z]+$/);
      expect(r.json()).toEqual({ error: { code: "INTERNAL", message: expect.stringContaining(id), requestId: id } });
      const logged = lines.find((l) => l.reqId === id);
      expect(logged).toMatchObject({ level: 50, msg: "internal error", err: { message: c.bug } });
    }
    // Each failure was that request's alone.
    expect((await call(`${gw.url}/invoke/f`)).status).toBe(200);
    expect((await call(`${gw.url}/healthz`)).status).toBe(200);
  });
});

describe("spec.auth: apiKey", () => {
  /** A replica that answers with the headers it received. */
  const echoHeaders = (req: IncomingMessage, res: ServerResponse): void => {
    req.resume();
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify(req.headers));
  };

  async function setUp() {
    const b = new TestBackend();
    b.add("locked", { auth: "apiKey" });
    b.add("other", { auth: "apiKey" });
    b.add("open");
    const gw = await startGateway(b);
    const rep = await replica(echoHeaders);
    for (const fn of ["locked", "other", "open"]) b.announce(fn, [rep.endpoint]);
    const mine = newApiKey("locked");
    const theirs = newApiKey("other");
    for (const k of [mine, theirs]) b.apiKeys.set(k.record.id, k.record);
    return { b, gw, mine: mine.key, theirs: theirs.key };
  }

  it("answers 401 UNAUTHORIZED without a key, naming both ways to send one", async () => {
    const { gw } = await setUp();
    const r = await call(`${gw.url}/invoke/locked`);
    expect(r.status).toBe(401);
    expect(r.headers["www-authenticate"]).toBe('Bearer realm="faas"');
    expect(r.json()).toMatchObject({ error: { code: "UNAUTHORIZED" } });
    expect(r.body).toMatch(/Authorization: Bearer <key>.*X-Faas-Key: <key>/);
  });

  it("answers 403 FORBIDDEN for a wrong, malformed or another function's key, without echoing it", async () => {
    const { gw, mine, theirs } = await setUp();
    const forged = `${mine.slice(0, -4)}AAAA`;
    for (const headers of <Record<string, string>[]>[
      { authorization: `Bearer ${theirs}` },
      { "x-faas-key": theirs },
      { "x-faas-key": forged },
      { authorization: "Bearer not-a-key" },
      { "x-faas-key": "" },
    ]) {
      const r = await call(`${gw.url}/invoke/locked`, { headers });
      expect(r.status, JSON.stringify(headers)).toBe(403);
      expect(r.json()).toMatchObject({ error: { code: "FORBIDDEN" } });
      expect(r.body).not.toContain(theirs);
      expect(r.body).not.toContain(forged);
    }
    const metrics = (await call(`${gw.url}/metrics`)).body;
    expect(metricValue(metrics, "faas_auth_refusals_total", { function: "locked", code: "FORBIDDEN" })).toBe(5);
  });

  it("serves a right key in either header, and never forwards the key to the runner", async () => {
    const { gw, mine } = await setUp();
    const bearer = await call(`${gw.url}/invoke/locked`, { headers: { authorization: `Bearer ${mine}` } });
    expect(bearer.status).toBe(200);
    expect(bearer.json()).not.toHaveProperty("authorization");
    expect(bearer.body).not.toContain(mine);
    const viaHeader = await call(`${gw.url}/invoke/locked`, {
      headers: { "x-faas-key": mine, authorization: "Basic dXNlcjpwYXNz" },
    });
    expect(viaHeader.status).toBe(200);
    // With X-Faas-Key, Authorization is the function's own business and reaches it.
    expect(viaHeader.json()).toMatchObject({ authorization: "Basic dXNlcjpwYXNz" });
    expect(viaHeader.json()).not.toHaveProperty("x-faas-key");
    const both = await call(`${gw.url}/invoke/locked`, {
      headers: { "x-faas-key": mine, authorization: `Bearer ${mine}` },
    });
    expect(both.status).toBe(200);
    expect(both.body).not.toContain(mine);
  });

  it("refuses a revoked key on the next request", async () => {
    const { b, gw, mine } = await setUp();
    const headers = { "x-faas-key": mine };
    expect((await call(`${gw.url}/invoke/locked`, { headers })).status).toBe(200);
    b.apiKeys.clear();
    expect((await call(`${gw.url}/invoke/locked`, { headers })).status).toBe(403);
  });

  it("leaves auth: none functions exactly as before: any headers pass through", async () => {
    const { gw, mine } = await setUp();
    const r = await call(`${gw.url}/invoke/open`, { headers: { authorization: "Bearer abc", "x-faas-key": mine } });
    expect(r.status).toBe(200);
    expect(r.json()).toMatchObject({ authorization: "Bearer abc", "x-faas-key": mine });
  });

  it("refuses everything for a function whose backend keeps no keys", async () => {
    const b = new TestBackend();
    (b as { keys?: KeyLookup }).keys = undefined;
    b.add("locked", { auth: "apiKey" });
    const gw = await startGateway(b);
    const { key } = newApiKey("locked");
    expect((await call(`${gw.url}/invoke/locked`)).status).toBe(401);
    expect((await call(`${gw.url}/invoke/locked`, { headers: { "x-faas-key": key } })).status).toBe(403);
  });

  it("redacts key headers in the gateway's logs", () => {
    let out = "";
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        out += chunk.toString();
        done();
      },
    });
    const log = createLogger("info", "test", sink);
    const { key } = newApiKey("f");
    log.info({ headers: { authorization: `Bearer ${key}`, "x-faas-key": key } }, "request");
    log.child({ fn: "f" }).warn({ req: { headers: { authorization: `Bearer ${key}` } }, key }, "nested");
    expect(out).toContain("[redacted]");
    expect(out).not.toContain(key);
  });
});
