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
 *
 * A pod's address reaches the API server only at the kubelet's next status
 * sync, up to a second after the runner listens; a runner that announces itself
 * (announcements.ts, ADR 0018) gives it sooner. An announced address is used
 * only for the pod the watch knows by that name and UID, while its status names
 * no other address, and it is probed with that UID: `/readyz` must answer with
 * `x-faas-pod-uid` equal to it.
 */
import { request } from "node:http";
import { FUNCTION_LABEL, RUNNER_PORT } from "@faas/api";
import type { ColdStep, Endpoint } from "@faas/gateway";
import { type KubeClient, type KubeObject, RESOURCES, Reflector } from "@faas/kube";
import type { Logger } from "pino";
import type { Announcement, AnnounceResult } from "./announcements.js";

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
/** How long an announcement is kept for a pod the watch does not show yet, or that no cold start waits for. */
const ANNOUNCED_TTL_MS = 30_000;

interface Announced {
  uid: string;
  ip: string;
  /** When the runner's process started, in this process's `performance.now()` time. */
  startedAt: number;
  until: number;
}

export class PodProber {
  readonly pods: Reflector<FunctionPod>;
  readonly #trackers = new Map<string, Tracker>();
  /** fn → pod name → endpoint found ready by a direct probe, and until when it counts. */
  readonly #probed = new Map<string, Map<string, { endpoint: Endpoint; until: number }>>();
  /** Pod name → the address its runner announced. */
  readonly #announced = new Map<string, Announced>();

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
      this.#announced.delete(p.metadata.name);
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

  /**
   * A runner says its pod is ready at `a.ip`. Kept for a while; used (probed, when a cold
   * start waits for that function) only for the pod the watch shows with that name and UID.
   */
  announce(a: Announcement, receivedAt = performance.now()): AnnounceResult {
    const pod = this.pods.get(`${this.namespace}/${a.pod}`);
    if (pod !== undefined) {
      const ip = pod.status?.podIP;
      if (pod.metadata.uid !== a.uid || (ip && ip !== a.ip)) return "mismatch";
      if (pod.metadata.deletionTimestamp !== undefined) return "terminating";
    }
    for (const [name, e] of this.#announced) if (e.until <= receivedAt) this.#announced.delete(name);
    this.#announced.set(a.pod, {
      uid: a.uid,
      ip: a.ip,
      startedAt: receivedAt - a.uptimeMs,
      until: receivedAt + ANNOUNCED_TTL_MS,
    });
    if (pod === undefined) return "pending";
    this.#observe(pod);
    return "accepted";
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
    let ip = p.status?.podIP;
    let uid: string | undefined;
    const a = this.#announced.get(p.metadata.name);
    if (a !== undefined) {
      if (a.uid !== p.metadata.uid || (ip && ip !== a.ip) || a.until <= now) {
        if (ip && ip !== a.ip && a.uid === p.metadata.uid) {
          this.log.warn(
            { fn, pod: p.metadata.name, announced: a.ip, status: ip },
            "announced address differs from the pod's",
          );
        }
        this.#announced.delete(p.metadata.name);
      } else if (!ip) {
        ip = a.ip;
        uid = a.uid;
        t.marks.startedAt ??= Math.max(a.startedAt, t.marks.scheduledAt ?? a.startedAt);
      }
    }
    if (ip && !t.probing.has(p.metadata.name)) {
      t.probing.add(p.metadata.name);
      void this.#probe(fn, p.metadata.name, ip, t, uid);
    }
  }

  /** Probes `ip` until ready; with `uid` (an announced address) the runner must name that pod. */
  async #probe(fn: string, pod: string, ip: string, t: Tracker, uid?: string): Promise<void> {
    const deadline = performance.now() + 120_000;
    while (!t.stopped && performance.now() < deadline) {
      const current = this.pods.get(`${this.namespace}/${pod}`);
      if (current === undefined || current.metadata.deletionTimestamp !== undefined) return;
      if (uid !== undefined && current.metadata.uid !== uid) return;
      const statusIp = current.status?.podIP;
      if (statusIp && statusIp !== ip) {
        // An announced address the pod's status contradicts: probe the status's instead.
        t.probing.delete(pod);
        this.#observe(current);
        return;
      }
      if (await readyz(ip, uid)) {
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

/** `GET /readyz` → 200 (naming pod `uid` when given), on a fresh connection with a short timeout. */
function readyz(ip: string, uid?: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(
      { host: ip, port: RUNNER_PORT, path: "/readyz", agent: false, timeout: PROBE_TIMEOUT_MS },
      (res) => {
        res.resume();
        resolve(res.statusCode === 200 && (uid === undefined || res.headers["x-faas-pod-uid"] === uid));
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
