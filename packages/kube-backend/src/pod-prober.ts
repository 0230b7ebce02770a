/**
 * The Deployment path of a cold start, made faster and accountable: while a
 * cold episode waits for a function's pod, the gateway watches the function's
 * pods and probes a new pod's runner directly (`GET /readyz` on the pod IP)
 * from the moment it has an address — as Knative's activator does — instead of
 * waiting for the kubelet's readiness probe and the EndpointSlice. A pod
 * found ready this way is routable for a short while; by then the
 * EndpointSlice has it (and speaks for it from then on). A pod being deleted
 * or marked terminating is never routed to. It also records when the pod was
 * scheduled, its container started and its runner answered, for the cold
 * start's `server-timing`.
 */
import { request } from "node:http";
import { FUNCTION_LABEL, RUNNER_PORT } from "@faas/api";
import type { ColdStep, Endpoint } from "@faas/gateway";
import { type KubeClient, type KubeObject, RESOURCES, Reflector } from "@faas/kube";
import type { Logger } from "pino";

export interface FunctionPod extends KubeObject {
  status?: {
    podIP?: string;
    conditions?: { type: string; status: string }[];
    containerStatuses?: { state?: { running?: unknown } }[];
  };
}

/** Marks of one cold episode's pod, in `performance.now()` time. */
export interface PodMarks {
  scheduledAt?: number;
  startedAt?: number;
  readyAt?: number;
}

interface Tracker {
  marks: PodMarks;
  probing: Set<string>;
  stopped: boolean;
}

const PROBE_INTERVAL_MS = 10;
const PROBE_TIMEOUT_MS = 300;
/** How long a directly probed pod is routable without the EndpointSlice saying so. */
const PROBED_TTL_MS = 10_000;

export class PodProber {
  readonly pods: Reflector<FunctionPod>;
  readonly #trackers = new Map<string, Tracker>();
  /** fn → pod name → endpoint found ready by a direct probe, and until when it counts. */
  readonly #probed = new Map<string, Map<string, { endpoint: Endpoint; until: number }>>();

  constructor(
    client: KubeClient,
    private readonly namespace: string,
    private readonly log: Logger,
    /** Routing of this function must be recomputed. */
    private readonly onChange: (fn: string) => void,
  ) {
    this.pods = new Reflector<FunctionPod>(
      client,
      { resource: { ...RESOURCES.pods, namespace }, labelSelector: FUNCTION_LABEL },
      log.child({ reflector: "function-pods" }),
    );
    const seen = (p: FunctionPod): void => this.#observe(p);
    this.pods.on("add", seen);
    this.pods.on("update", seen);
    this.pods.on("delete", (p) => {
      const fn = p.metadata.labels?.[FUNCTION_LABEL];
      if (fn !== undefined && this.#probed.get(fn)?.delete(p.metadata.name)) this.onChange(fn);
    });
  }

  start(): Promise<void> {
    return this.pods.start();
  }

  stop(): void {
    this.pods.stop();
    for (const t of this.#trackers.values()) t.stopped = true;
  }

  /** Starts watching `fn`'s pods for one cold episode; `stop()` when it is over. */
  track(fn: string): { marks: PodMarks; stop(): void } {
    const tracker: Tracker = { marks: {}, probing: new Set(), stopped: false };
    this.#trackers.get(fn)?.probing.clear();
    this.#trackers.set(fn, tracker);
    for (const p of this.pods.list()) if (p.metadata.labels?.[FUNCTION_LABEL] === fn) this.#observe(p);
    return {
      marks: tracker.marks,
      stop: () => {
        tracker.stopped = true;
        if (this.#trackers.get(fn) === tracker) this.#trackers.delete(fn);
      },
    };
  }

  /** Pods of `fn` found ready by a direct probe, not being deleted, within their time to live. */
  endpoints(fn: string): Endpoint[] {
    const probed = this.#probed.get(fn);
    if (probed === undefined) return [];
    const now = performance.now();
    const out: Endpoint[] = [];
    for (const [name, e] of probed) {
      const pod = this.pods.get(`${this.namespace}/${name}`);
      if (e.until <= now || pod === undefined || pod.metadata.deletionTimestamp !== undefined) {
        probed.delete(name);
        continue;
      }
      out.push(e.endpoint);
    }
    return out;
  }

  #observe(p: FunctionPod): void {
    const fn = p.metadata.labels?.[FUNCTION_LABEL];
    if (fn === undefined) return;
    if (p.metadata.deletionTimestamp !== undefined) {
      if (this.#probed.get(fn)?.delete(p.metadata.name)) this.onChange(fn);
      return;
    }
    const t = this.#trackers.get(fn);
    if (t === undefined || t.stopped) return;
    const now = performance.now();
    if (
      t.marks.scheduledAt === undefined &&
      p.status?.conditions?.some((c) => c.type === "PodScheduled" && c.status === "True")
    ) {
      t.marks.scheduledAt = now;
    }
    if (t.marks.startedAt === undefined && p.status?.containerStatuses?.some((c) => c.state?.running !== undefined)) {
      t.marks.startedAt = now;
    }
    const ip = p.status?.podIP;
    if (ip && !t.probing.has(p.metadata.name)) {
      t.probing.add(p.metadata.name);
      void this.#probe(fn, p.metadata.name, ip, t);
    }
  }

  async #probe(fn: string, pod: string, ip: string, t: Tracker): Promise<void> {
    const deadline = performance.now() + 120_000;
    while (!t.stopped && performance.now() < deadline) {
      const current = this.pods.get(`${this.namespace}/${pod}`);
      if (current === undefined || current.metadata.deletionTimestamp !== undefined) return;
      if (await readyz(ip)) {
        const now = performance.now();
        t.marks.readyAt ??= now;
        t.marks.startedAt ??= now;
        let probed = this.#probed.get(fn);
        if (probed === undefined) {
          probed = new Map();
          this.#probed.set(fn, probed);
        }
        probed.set(pod, { endpoint: { id: `${pod}@${ip}`, host: ip, port: RUNNER_PORT }, until: now + PROBED_TTL_MS });
        this.log.debug({ fn, pod, ip }, "pod ready by direct probe");
        this.onChange(fn);
        // Once the time to live is over, routing falls back to what the EndpointSlice says.
        setTimeout(() => this.onChange(fn), PROBED_TTL_MS + 10).unref();
        return;
      }
      await new Promise((r) => setTimeout(r, PROBE_INTERVAL_MS));
    }
  }
}

/** `GET /readyz` → 200, on a fresh connection with a short timeout. */
function readyz(ip: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(
      { host: ip, port: RUNNER_PORT, path: "/readyz", agent: false, timeout: PROBE_TIMEOUT_MS },
      (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      },
    );
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(false));
    req.end();
  });
}

/** server-timing steps of a Deployment-path cold start: scale, scheduled, started, ready. */
export function deploymentSteps(startedAt: number, scaledAt: number, marks: PodMarks, doneAt: number): ColdStep[] {
  const steps: ColdStep[] = [{ name: "scale", ms: scaledAt - startedAt }];
  let prev = scaledAt;
  for (const [name, at] of [
    ["scheduled", marks.scheduledAt],
    ["started", marks.startedAt],
    ["ready", marks.readyAt ?? doneAt],
  ] as const) {
    if (at === undefined) continue;
    steps.push({ name, ms: Math.max(0, at - prev) });
    prev = Math.max(prev, at);
  }
  return steps;
}
