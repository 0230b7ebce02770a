/**
 * The gateway's own figures per function on a cluster — cold starts and p50
 * latency — summed over every gateway pod's `/metrics`, read through the API
 * server's pod proxy (no port-forward needed). The p50 is estimated from the
 * merged latency histogram since the gateways started, the way Prometheus'
 * `histogram_quantile` does.
 */
import { GATEWAY_PORT, GATEWAY_SERVICE, SYSTEM_NAMESPACE } from "@faas/api";
import { type KubeClient, RESOURCES, readyPodNames, resourcePath } from "@faas/kube";

export interface FunctionFigures {
  coldStarts: number;
  /** Cumulative request counts by upper bound in seconds (`+Inf` as Infinity). */
  buckets: Map<number, number>;
}

export const GATEWAY_SELECTOR = `app.kubernetes.io/name=${GATEWAY_SERVICE}`;

/** The namespace a gateway reaches by bare names (ADR 0015: the first it serves, `default` by convention). */
export const GATEWAY_DEFAULT_NAMESPACE = "default";

/** How the gateway knows a function: its name in the default namespace, `<namespace>/<name>` elsewhere. */
export function gatewayKey(namespace: string, name: string): string {
  return namespace === GATEWAY_DEFAULT_NAMESPACE ? name : `${namespace}/${name}`;
}

/** `/invoke/<name>` or `/invoke/<namespace>/<name>`. */
export function invokePath(namespace: string, name: string): string {
  return `/invoke/${gatewayKey(namespace, name).split("/").map(encodeURIComponent).join("/")}`;
}

const SAMPLE = /^([a-zA-Z_:][\w:]*)\{([^}]*)\}\s+(\S+)/;
const LABEL = /(\w+)="((?:[^"\\]|\\.)*)"/g;

/** Adds one gateway's Prometheus text to `into` (per function). */
export function addGatewayMetrics(text: string, into: Map<string, FunctionFigures>): Map<string, FunctionFigures> {
  for (const line of text.split("\n")) {
    const m = SAMPLE.exec(line);
    if (m === null) continue;
    const [, metric, rawLabels, rawValue] = m as unknown as [string, string, string, string];
    if (metric !== "faas_cold_starts_total" && metric !== "faas_request_duration_seconds_bucket") continue;
    const labels = Object.fromEntries([...rawLabels.matchAll(LABEL)].map((l) => [l[1], l[2]]));
    const fn = labels.function;
    const value = Number(rawValue);
    if (fn === undefined || !Number.isFinite(value)) continue;
    let figures = into.get(fn);
    if (figures === undefined) {
      figures = { coldStarts: 0, buckets: new Map() };
      into.set(fn, figures);
    }
    if (metric === "faas_cold_starts_total") figures.coldStarts += value;
    else {
      const le = labels.le === "+Inf" ? Number.POSITIVE_INFINITY : Number(labels.le);
      figures.buckets.set(le, (figures.buckets.get(le) ?? 0) + value);
    }
  }
  return into;
}

/** The median in milliseconds from cumulative buckets, interpolated within its bucket; null without requests. */
export function p50Ms(buckets: ReadonlyMap<number, number>): number | null {
  const bounds = [...buckets.keys()].sort((a, b) => a - b);
  const total = buckets.get(Number.POSITIVE_INFINITY) ?? (bounds.length > 0 ? buckets.get(bounds.at(-1) as number) : 0);
  if (!total) return null;
  const rank = total / 2;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const le of bounds) {
    const count = buckets.get(le) ?? 0;
    if (count >= rank) {
      // Past the last finite bound there is nothing to interpolate to: report that bound.
      if (le === Number.POSITIVE_INFINITY) return lowerBound * 1000;
      const share = count === lowerCount ? 0 : (rank - lowerCount) / (count - lowerCount);
      return (lowerBound + (le - lowerBound) * share) * 1000;
    }
    lowerBound = le;
    lowerCount = count;
  }
  return null;
}

interface GatewayPod {
  metadata: { name: string; annotations?: Record<string, string> };
  spec?: { containers?: { ports?: { name?: string; containerPort: number }[] }[] };
}

/**
 * Where a gateway pod serves `/metrics`: its container port named `metrics`,
 * else its `prometheus.io/port` annotation, else the gateway port (gateways
 * that served metrics beside `/invoke`).
 */
export function metricsPort(pod: GatewayPod): number {
  for (const c of pod.spec?.containers ?? []) {
    const port = c.ports?.find((p) => p.name === "metrics");
    if (port) return port.containerPort;
  }
  const annotated = Number(pod.metadata.annotations?.["prometheus.io/port"]);
  return Number.isInteger(annotated) && annotated > 0 ? annotated : GATEWAY_PORT;
}

/** Every ready gateway pod's figures, summed; throws when the pods cannot be listed or read. */
export async function gatewayFigures(kube: KubeClient): Promise<Map<string, FunctionFigures>> {
  const { items } = await kube.list<GatewayPod & Parameters<typeof readyPodNames>[0][number]>(
    { ...RESOURCES.pods, namespace: SYSTEM_NAMESPACE },
    { labelSelector: GATEWAY_SELECTOR },
  );
  const ready = new Set(readyPodNames(items));
  const pods = items.filter((p) => ready.has(p.metadata.name));
  if (pods.length === 0) throw new Error(`no ready ${GATEWAY_SERVICE} pod in ${SYSTEM_NAMESPACE}`);
  const texts = await Promise.all(
    pods.map(async (pod) => {
      // Through the API server's pod proxy: no port-forward, and the metrics port need not be exposed.
      const path = resourcePath({
        ...RESOURCES.pods,
        namespace: SYSTEM_NAMESPACE,
        name: `${pod.metadata.name}:${metricsPort(pod)}`,
        subresource: "proxy/metrics",
      });
      const res = await kube.stream(path, {}, { idleTimeoutMs: 5000 });
      const chunks: Buffer[] = [];
      for await (const c of res) chunks.push(c as Buffer);
      return Buffer.concat(chunks).toString("utf8");
    }),
  );
  const figures = new Map<string, FunctionFigures>();
  for (const text of texts) addGatewayMetrics(text, figures);
  return figures;
}
