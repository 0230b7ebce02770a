/**
 * `faas list` on a cluster: one row per Function object (its status
 * subresource: replicas, conditions, URL) with the gateways' figures beside
 * it; the columns of local mode plus STATUS.
 */
import { RESOURCES, readApiKeys } from "@faas/kube";
import { type ClusterTarget, connectCluster } from "../cluster-context.js";
import type { CommandContext } from "../context.js";
import { EXIT } from "../exit-codes.js";
import { type Colors, formatTable } from "../ui.js";
import { type ClusterFunction, statusWord } from "./function-object.js";
import {
  type FunctionFigures,
  GATEWAY_DEFAULT_NAMESPACE,
  gatewayFigures,
  gatewayKey,
  p50Ms,
} from "./gateway-figures.js";
import { kubeFailure } from "./kube-errors.js";

export interface ClusterSummary {
  name: string;
  runtime: string;
  readyReplicas: number;
  desiredReplicas: number;
  minReplicas: number;
  maxReplicas: number;
  status: string;
  message: string;
  /** From the gateways' metrics; null when they could not be read. */
  coldStarts: number | null;
  p50Ms: number | null;
  /** spec.auth: `none` or `apiKey`. */
  auth: string;
  /** API keys of an `apiKey` function in the namespace's Secret; null when unknown. */
  apiKeys: number | null;
  url: string;
}

export const LIST_HEADER = [
  "NAME",
  "RUNTIME",
  "READY",
  "MIN/MAX",
  "STATUS",
  "COLD-STARTS",
  "P50",
  "AUTH",
  "URL",
] as const;

export function summarize(
  fn: ClusterFunction,
  figures: ReadonlyMap<string, FunctionFigures> | undefined,
  namespace = GATEWAY_DEFAULT_NAMESPACE,
  keysByFunction?: ReadonlyMap<string, number>,
): ClusterSummary {
  const name = fn.metadata.name;
  const f = figures?.get(gatewayKey(namespace, name));
  const ready = fn.status?.conditions?.find((c) => c.type === "Ready");
  return {
    name,
    runtime: String(fn.spec.runtime ?? ""),
    readyReplicas: fn.status?.readyReplicas ?? 0,
    desiredReplicas: fn.status?.replicas ?? 0,
    minReplicas: fn.spec.minReplicas ?? 0,
    maxReplicas: fn.spec.maxReplicas ?? 0,
    status: statusWord(fn),
    message: ready?.message ?? "",
    coldStarts: figures === undefined ? null : (f?.coldStarts ?? 0),
    p50Ms: f === undefined ? null : p50Ms(f.buckets),
    auth: String(fn.spec.auth ?? "none"),
    apiKeys: keysByFunction === undefined ? null : (keysByFunction.get(name) ?? 0),
    url: fn.status?.url ?? "",
  };
}

export function listRows(items: readonly ClusterSummary[], c: Colors): string[][] {
  return items.map((s) => [
    c.bold(s.name),
    s.runtime,
    readyCell(s, c),
    `${s.minReplicas}/${s.maxReplicas}`,
    statusCell(s.status, c),
    s.coldStarts === null ? c.dim("-") : String(s.coldStarts),
    s.p50Ms === null ? c.dim("-") : `${s.p50Ms.toFixed(1)}ms`,
    authCell(s, c),
    s.url,
  ]);
}

function readyCell(s: ClusterSummary, c: Colors): string {
  const text = `${s.readyReplicas}/${s.desiredReplicas}`;
  if (s.readyReplicas === 0 && s.desiredReplicas === 0) return c.dim(text);
  return s.readyReplicas < s.desiredReplicas ? c.yellow(text) : c.green(text);
}

/** Local mode's AUTH cell: `none`, or `apiKey (N keys)` — how many, never which. */
function authCell(s: ClusterSummary, c: Colors): string {
  if (s.auth === "none") return c.dim("none");
  if (s.apiKeys === null) return s.auth;
  const text = `${s.auth} (${s.apiKeys} key${s.apiKeys === 1 ? "" : "s"})`;
  return s.apiKeys === 0 ? c.yellow(text) : text;
}

function statusCell(status: string, c: Colors): string {
  if (status === "Available" || status === "ScaledToZero") return c.green(status);
  return status === "Pending" || status === "Deleting" ? c.yellow(status) : c.red(status);
}

export async function listOnCluster(
  ctx: CommandContext,
  target: ClusterTarget,
  opts: { json?: boolean },
): Promise<number> {
  const { ui } = ctx;
  const conn = await connectCluster(target);
  let functions: ClusterFunction[];
  try {
    functions = (await conn.kube.list<ClusterFunction>({ ...RESOURCES.functions, namespace: conn.namespace })).items;
  } catch (err) {
    throw kubeFailure(err, "list functions", conn.where);
  }
  let figures: Map<string, FunctionFigures> | undefined;
  if (functions.length > 0) {
    try {
      figures = await gatewayFigures(conn.kube);
    } catch (err) {
      if (!opts.json) ui.note(ui.ce.dim(`gateway figures unavailable: ${(err as Error).message}`));
    }
  }
  let keysByFunction: Map<string, number> | undefined;
  if (functions.some((fn) => fn.spec.auth === "apiKey")) {
    try {
      const counts = new Map<string, number>();
      for (const r of await readApiKeys(conn.kube, conn.namespace)) {
        counts.set(r.function, (counts.get(r.function) ?? 0) + 1);
      }
      keysByFunction = counts;
    } catch {
      // Reading the keys' Secret may be forbidden: AUTH then shows no count.
    }
  }
  const items = functions
    .map((fn) => summarize(fn, figures, conn.namespace, keysByFunction))
    .sort((a, b) => a.name.localeCompare(b.name));
  if (opts.json) {
    ui.out(JSON.stringify(items, null, 2));
    return EXIT.OK;
  }
  if (items.length === 0) {
    ui.out(ui.c.dim(`no functions in ${conn.where}; deploy one with \`faas deploy -f FILE\``));
    return EXIT.OK;
  }
  ui.out(formatTable(LIST_HEADER, listRows(items, ui.c), ui.c));
  return EXIT.OK;
}
