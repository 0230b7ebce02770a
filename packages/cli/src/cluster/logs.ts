/**
 * `faas logs` on a cluster: the function's pods (its Deployment's, and a warm
 * pool pod claimed for it) read through `pods/<pod>/log`, each line prefixed
 * by its pod. History is merged in time order; `-f` follows every pod and
 * picks up pods that start while it runs (a scale-up, a cold start).
 */
import { CLAIMED_FOR_LABEL, FUNCTION_LABEL } from "@faas/api";
import { type KubeClient, KubeError, RESOURCES, resourcePath } from "@faas/kube";
import { type ClusterConnection, type ClusterTarget, connectCluster } from "../cluster-context.js";
import type { CommandContext } from "../context.js";
import { EXIT } from "../exit-codes.js";
import { kubeFailure } from "./kube-errors.js";
import { formatLogLine, LineSplitter, type LogLine, mergeByTime, parseLogLine } from "./log-lines.js";

interface Pod {
  metadata: { name: string; deletionTimestamp?: string; creationTimestamp?: string };
  spec?: { containers?: { name: string }[] };
  status?: { phase?: string };
}

/** How often `-f` looks for new pods. */
const POD_POLL_MS = 2000;

export async function functionPods(kube: KubeClient, namespace: string, name: string): Promise<Pod[]> {
  const ref = { ...RESOURCES.pods, namespace };
  const [own, claimed] = await Promise.all([
    kube.list<Pod>(ref, { labelSelector: `${FUNCTION_LABEL}=${name}` }),
    kube.list<Pod>(ref, { labelSelector: `${CLAIMED_FOR_LABEL}=${name}` }),
  ]);
  const byName = new Map([...own.items, ...claimed.items].map((p) => [p.metadata.name, p]));
  return [...byName.values()]
    .filter((p) => p.status?.phase !== "Pending")
    .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
}

function logPath(namespace: string, pod: string): string {
  return resourcePath({ ...RESOURCES.pods, namespace, name: pod, subresource: "log" });
}

function containerOf(pod: Pod): string | undefined {
  return pod.spec?.containers?.[0]?.name;
}

export async function logsOnCluster(
  ctx: CommandContext,
  target: ClusterTarget,
  name: string,
  opts: { follow?: boolean; tail: number },
): Promise<number> {
  const { ui } = ctx;
  const conn = await connectCluster(target);
  try {
    await conn.kube.get({ ...RESOURCES.functions, namespace: conn.namespace, name });
  } catch (err) {
    throw kubeFailure(err, `function ${name}`, conn.where);
  }
  const label = (pod: string): string => ui.c.cyan(pod);
  const write = (line: LogLine): void => void ui.stdout.write(`${formatLogLine(line, label)}\n`);
  let pods: Pod[];
  try {
    pods = await functionPods(conn.kube, conn.namespace, name);
  } catch (err) {
    throw kubeFailure(err, `pods of ${name}`, conn.where);
  }
  if (!opts.follow) {
    if (pods.length === 0) ui.note(ui.ce.dim(`${name} has no pods now (scaled to zero?): no logs to show`));
    const perPod = await Promise.all(pods.map((p) => history(conn, p, opts.tail)));
    for (const line of mergeByTime(perPod)) write(line);
    return EXIT.OK;
  }
  return follow(ctx, conn, name, pods, opts.tail, write);
}

async function history(conn: ClusterConnection, pod: Pod, tail: number): Promise<LogLine[]> {
  let res: Awaited<ReturnType<KubeClient["stream"]>>;
  try {
    res = await conn.kube.stream(
      logPath(conn.namespace, pod.metadata.name),
      { container: containerOf(pod), tailLines: tail, timestamps: true },
      { idleTimeoutMs: 15_000 },
    );
  } catch (err) {
    // A container that has not started yet has no log: nothing to show for it.
    if (err instanceof KubeError && err.status === 400) return [];
    throw kubeFailure(err, `logs of ${pod.metadata.name}`, conn.where);
  }
  const splitter = new LineSplitter();
  const lines: LogLine[] = [];
  res.setEncoding("utf8");
  for await (const chunk of res as AsyncIterable<string>) {
    for (const raw of splitter.push(chunk)) lines.push(parseLogLine(pod.metadata.name, raw));
  }
  for (const raw of splitter.end()) lines.push(parseLogLine(pod.metadata.name, raw));
  return lines;
}

/** Follows every pod until Ctrl-C; pods that appear later are followed from their first line. */
function follow(
  ctx: CommandContext,
  conn: ClusterConnection,
  name: string,
  initial: readonly Pod[],
  tail: number,
  write: (line: LogLine) => void,
): Promise<number> {
  const abort = new AbortController();
  const following = new Set<string>();
  /** Last timestamp printed per pod: a stream opened again (a restarted runner) starts after it. */
  const lastTime = new Map<string, string>();
  const known = new Set(initial.map((p) => p.metadata.name));

  const start = async (pod: Pod, tailLines: number | undefined): Promise<void> => {
    const podName = pod.metadata.name;
    following.add(podName);
    try {
      const since = lastTime.get(podName);
      const res = await conn.kube.stream(
        logPath(conn.namespace, podName),
        {
          container: containerOf(pod),
          follow: true,
          timestamps: true,
          ...(since ? { sinceTime: since.replace(/\.\d+Z$/, "Z") } : { tailLines }),
        },
        { signal: abort.signal, idleTimeoutMs: 0 },
      );
      const splitter = new LineSplitter();
      res.setEncoding("utf8");
      const emit = (raw: string): void => {
        const line = parseLogLine(podName, raw);
        const prev = lastTime.get(podName);
        // sinceTime has whole seconds: skip what this pod already printed.
        if (since && prev && line.time && line.time <= prev) return;
        if (line.time) lastTime.set(podName, line.time);
        write(line);
      };
      for await (const chunk of res as AsyncIterable<string>) for (const raw of splitter.push(chunk)) emit(raw);
      for (const raw of splitter.end()) emit(raw);
    } catch {
      // The pod went, or its container has not started: the next look at the pods decides.
    } finally {
      following.delete(podName);
    }
  };

  const poll = async (): Promise<void> => {
    let pods: Pod[];
    try {
      pods = await functionPods(conn.kube, conn.namespace, name);
    } catch {
      return;
    }
    for (const pod of pods) {
      const podName = pod.metadata.name;
      if (following.has(podName) || pod.metadata.deletionTimestamp) continue;
      const isNew = !known.has(podName);
      known.add(podName);
      void start(pod, isNew ? undefined : tail);
    }
  };

  return new Promise<number>((resolve) => {
    ctx.onInterrupt = () => {
      abort.abort();
      clearInterval(timer);
      resolve(EXIT.INTERRUPTED);
      // Like local mode's logs -f: Ctrl-C ends the process even if a socket lingers.
      setTimeout(() => process.exit(EXIT.INTERRUPTED), 1000).unref();
    };
    for (const pod of initial) void start(pod, tail);
    const timer = setInterval(() => void poll(), POD_POLL_MS);
  });
}
