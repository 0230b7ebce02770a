/**
 * The operator on the real cluster, run from the host exactly like the
 * walkthrough (`node packages/operator/dist/main.js --namespace <ns>`): Functions
 * become ConfigMap + Deployment + Service (+ HPA) that serve; code updates roll
 * out without failed requests; replicas set by others are left alone; idle
 * functions go to zero; the API server refuses invalid Functions; deleting a
 * Function removes its children; a killed operator converges on restart; two
 * operators with leader election never both reconcile.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments, stringify } from "yaml";
import { kubeconfigPath, kubectl, kubectlJson, repoRoot, useTestNamespace, waitFor } from "./fixture.js";

const ns = useTestNamespace("operator");

interface LogLine {
  msg: string;
  level: number;
  fn?: string;
  [k: string]: unknown;
}

interface OperatorProcess {
  child: ChildProcess;
  logs: LogLine[];
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

const running = new Set<OperatorProcess>();

function startOperator(extraArgs: string[] = [], env: Record<string, string> = {}): OperatorProcess {
  const child = spawn(
    process.execPath,
    [
      join(repoRoot, "packages/operator/dist/main.js"),
      "--namespace",
      ns.name,
      "--kubeconfig",
      kubeconfigPath,
      "--log-level",
      "debug",
      ...extraArgs,
    ],
    // No warm pool here: no gateway serves this namespace (test/cluster/pool.test.ts covers it).
    {
      env: { ...process.env, FAAS_PRESTOP_SLEEP_SECONDS: "2", FAAS_POOL_SIZE: "0", ...env },
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  const logs: LogLine[] = [];
  let buf = "";
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    buf += d;
    for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        logs.push(JSON.parse(line) as LogLine);
      } catch {
        logs.push({ msg: line, level: 50 });
      }
    }
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const op: OperatorProcess = {
    child,
    logs,
    exited,
    stop: (signal = "SIGTERM") => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      running.delete(op);
      return exited;
    },
  };
  running.add(op);
  return op;
}

const reconciled = (op: OperatorProcess, fn?: string): number =>
  op.logs.filter((l) => l.msg === "reconciled" && (fn === undefined || l.fn === `${ns.name}/${fn}`)).length;

interface Condition {
  type: string;
  status: string;
  reason: string;
  lastTransitionTime: string;
}
interface FunctionObj {
  metadata: { generation: number; annotations?: Record<string, string> };
  status?: {
    observedGeneration?: number;
    replicas?: number;
    readyReplicas?: number;
    selector?: string;
    url?: string;
    codeHash?: string;
    conditions?: Condition[];
  };
}
interface Deployment {
  metadata: {
    labels: Record<string, string>;
    ownerReferences: { kind: string; name: string; controller: boolean; blockOwnerDeletion: boolean }[];
    managedFields: { manager: string; operation: string; fieldsV1: { "f:spec"?: Record<string, unknown> } }[];
  };
  spec: {
    replicas: number;
    template: { metadata: { annotations: Record<string, string> }; spec: Record<string, unknown> };
  };
  status: { readyReplicas?: number; updatedReplicas?: number; replicas?: number };
}
interface Pod {
  metadata: { name: string; deletionTimestamp?: string };
  status: { podIP?: string; conditions?: { type: string; status: string }[] };
}

const fnYaml = (name: string, spec: Record<string, unknown>): string =>
  JSON.stringify({ apiVersion: "faas.example.com/v1", kind: "Function", metadata: { name, namespace: ns.name }, spec });

const hello = (reply: string): string => `def handle(req):\n    return ${JSON.stringify(reply)}\n`;

const getFn = (name: string) => kubectlJson<FunctionObj>(["-n", ns.name, "get", "function", name]);
const getDeploy = (name: string) =>
  kubectlJson<Deployment>(["-n", ns.name, "get", "deployment", `fn-${name}-deploy`, "--show-managed-fields"]);
const readyPods = async (name: string): Promise<Pod[]> => {
  const pods = await kubectlJson<{ items: Pod[] }>([
    "-n",
    ns.name,
    "get",
    "pods",
    "-l",
    `faas.example.com/function=${name}`,
  ]);
  return pods.items.filter(
    (p) => !p.metadata.deletionTimestamp && p.status.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
  );
};
const condition = (f: FunctionObj, type: string) => f.status?.conditions?.find((c) => c.type === type);

async function waitForReady(name: string, reason: string, timeoutMs = 120_000): Promise<FunctionObj> {
  return waitFor(
    `${name} Ready=${reason}`,
    async () => {
      const f = await getFn(name);
      const ready = condition(f, "Ready");
      return ready?.reason === reason && f.status?.observedGeneration === f.metadata.generation ? f : undefined;
    },
    { timeoutMs },
  );
}

/** One HTTP GET on a fresh connection (no keep-alive), as a client behind a load balancer would. */
function getOnce(url: string, timeoutMs = 5_000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, timeout: timeoutMs }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (d: string) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}

async function eventReasons(name: string): Promise<string[]> {
  const events = await kubectlJson<{
    items: { reason: string; source?: { component?: string }; reportingComponent?: string }[];
  }>(["-n", ns.name, "get", "events", "--field-selector", `involvedObject.kind=Function,involvedObject.name=${name}`]);
  return events.items.filter((e) => e.reportingComponent === "faas-operator").map((e) => e.reason);
}

beforeAll(async () => {
  execFileSync(process.execPath, [join(repoRoot, "node_modules/typescript/bin/tsc"), "-b", "packages/operator"], {
    cwd: repoRoot,
  });
  // Cluster-wide and shared with the other cluster tests: applied, never deleted here.
  await kubectl(["apply", "-f", join(repoRoot, "crd.yaml")]);
  await kubectl(["wait", "--for=condition=Established", "crd/functions.faas.example.com", "--timeout=60s"]);
});

afterAll(async () => {
  await Promise.all([...running].map((op) => op.stop("SIGKILL")));
});

describe("operator, one process", () => {
  let op: OperatorProcess;
  beforeAll(() => {
    op = startOperator();
  });
  afterAll(async () => {
    expect(await op.stop()).toBe(0);
    await ns.kubectl(["delete", "function", "--all", "--wait=true"], { allowFailure: true });
  });

  it("turns a Function into ConfigMap, Deployment and Service that serve it; status and printer columns", async () => {
    await ns.apply(
      fnYaml("hello", {
        runtime: "python",
        code: hello("hello from runner"),
        minReplicas: 1,
        maxReplicas: 1,
        timeoutSeconds: 10,
      }),
    );
    const t0 = Date.now();
    const f = await waitForReady("hello", "Available");
    console.log(`hello: Function applied → Ready=Available in ${Date.now() - t0} ms`);

    // One code ConfigMap, named by the code hash, immutable, and the one the pods mount.
    const cms = await kubectlJson<{
      items: { metadata: { name: string }; data: Record<string, string>; immutable?: boolean }[];
    }>(["-n", ns.name, "get", "configmap", "-l", "faas.example.com/function=hello"]);
    expect(cms.items.map((c) => c.metadata.name)).toEqual([expect.stringMatching(/^fn-hello-code-[0-9a-f]{16}$/)]);
    const cm = cms.items[0] as (typeof cms.items)[number];
    expect(cm.immutable).toBe(true);
    expect(Object.keys(cm.data).sort()).toEqual(["function.json", "main.py"]);
    expect(JSON.parse(cm.data["function.json"] ?? "")).toMatchObject({
      name: "hello",
      runtime: "python",
      handler: "main.handle",
    });

    const d = await getDeploy("hello");
    expect(d.metadata.labels["faas.example.com/function"]).toBe("hello");
    expect(d.metadata.ownerReferences).toEqual([
      expect.objectContaining({ kind: "Function", name: "hello", controller: true, blockOwnerDeletion: true }),
    ]);
    expect(d.spec.replicas).toBe(1);
    const pod = d.spec.template.spec as {
      containers: {
        image: string;
        securityContext: unknown;
        env: { name: string; value?: string; valueFrom?: unknown }[];
        resources: { limits: Record<string, string> };
      }[];
      volumes?: unknown[];
      terminationGracePeriodSeconds: number;
    };
    expect(pod.containers[0]?.image).toBe("faas-python-runner:latest");
    // No volume (ADR 0018): the code comes as env, /tmp is the capped writable layer.
    expect(pod.volumes).toBeUndefined();
    expect(pod.containers[0]?.securityContext).toMatchObject({
      runAsNonRoot: true,
      readOnlyRootFilesystem: false,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
    });
    expect(pod.containers[0]?.resources.limits["ephemeral-storage"]).toBe("64Mi");
    const env = Object.fromEntries((pod.containers[0]?.env ?? []).map((e) => [e.name, e]));
    expect(JSON.parse(env.FAAS_FUNCTION_SPEC?.value ?? "")).toMatchObject({ name: "hello", handler: "main.handle" });
    expect(env.FAAS_ANNOUNCE_URL?.value).toBe("http://faas-gateway.faas-system.svc:8001/announce");
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(10 + 5);
    // The operator's server-side apply never owns replicas.
    const applied = d.metadata.managedFields.find((m) => m.manager === "faas-operator" && m.operation === "Apply");
    expect(applied?.fieldsV1["f:spec"]).toBeDefined();
    expect(applied?.fieldsV1["f:spec"]).not.toHaveProperty("f:replicas");

    const svc = await kubectlJson<{
      metadata: { labels: Record<string, string> };
      spec: { clusterIP: string; ports: { port: number; targetPort: string }[] };
    }>(["-n", ns.name, "get", "service", "fn-hello"]);
    expect(svc.metadata.labels["faas.example.com/function"]).toBe("hello");
    expect(svc.spec.ports).toEqual([expect.objectContaining({ port: 8080, targetPort: "http" })]);

    expect(f.status).toMatchObject({
      replicas: 1,
      readyReplicas: 1,
      selector: "faas.example.com/function=hello",
      url: "http://faas-gateway.faas-system:8000/invoke/hello",
    });
    expect(f.status?.codeHash).toMatch(/^[0-9a-f]{16}$/);

    const [p] = await readyPods("hello");
    expect((await getOnce(`http://${p?.status.podIP}:8080/invoke`)).body).toBe("hello from runner");
    const viaService = await waitFor("the Service answering", async () => {
      const r = await getOnce(`http://${svc.spec.clusterIP}:8080/invoke`).catch(() => undefined);
      return r?.status === 200 ? r : undefined;
    });
    expect(viaService.body).toBe("hello from runner");

    const table = await ns.kubectl(["get", "functions"]);
    console.log(table.stdout);
    expect(table.stdout).toMatch(/NAME\s+RUNTIME\s+READY\s+DESIRED\s+MIN\s+MAX\s+STATUS\s+AGE/);
    expect(table.stdout).toMatch(/hello\s+python\s+1\s+1\s+1\s+1\s+Available\s+\d+s/);
    await waitFor("a Created event", async () =>
      (await eventReasons("hello")).includes("Created") ? true : undefined,
    );
  });

  it("annotation-only changes do not reconcile", async () => {
    // Wait for quiet: pod and Deployment status events do reconcile.
    let last = -1;
    await waitFor(
      "no reconciles for 2 s",
      async () => {
        const n = reconciled(op, "hello");
        const quiet = n === last;
        last = n;
        return quiet ? true : undefined;
      },
      { intervalMs: 2_000 },
    );
    const before = reconciled(op, "hello");
    for (let i = 0; i < 5; i++) {
      await ns.kubectl([
        "annotate",
        "--overwrite",
        "function",
        "hello",
        `faas.example.com/last-request-at=${new Date().toISOString()}`,
      ]);
    }
    await new Promise((r) => setTimeout(r, 2_000));
    expect(reconciled(op, "hello")).toBe(before);
  });

  it("rolls out a code update with no failed request under load; the new code answers", async () => {
    const svc = await kubectlJson<{ spec: { clusterIP: string } }>(["-n", ns.name, "get", "service", "fn-hello"]);
    const url = `http://${svc.spec.clusterIP}:8080/invoke`;
    const before = await getFn("hello");
    let stop = false;
    const counts = { ok: 0, errors: 0, v1: 0, v2: 0 };
    const failures: string[] = [];
    const worker = async (): Promise<void> => {
      while (!stop) {
        try {
          const r = await getOnce(url);
          if (r.status === 200 && r.body === "hello from runner") counts.v1++;
          else if (r.status === 200 && r.body === "hello v2") counts.v2++;
          else {
            counts.errors++;
            failures.push(`${r.status} ${r.body.slice(0, 100)}`);
            continue;
          }
          counts.ok++;
        } catch (err) {
          counts.errors++;
          failures.push((err as Error).message);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const load = Promise.all([worker(), worker(), worker(), worker()]);
    await new Promise((r) => setTimeout(r, 1_000));
    const t0 = Date.now();
    await ns.apply(
      fnYaml("hello", {
        runtime: "python",
        code: hello("hello v2"),
        minReplicas: 1,
        maxReplicas: 1,
        timeoutSeconds: 10,
      }),
    );
    const after = await waitFor(
      "the rollout of the new code",
      async () => {
        const f = await getFn("hello");
        const pods = await kubectlJson<{ items: Pod[] }>([
          "-n",
          ns.name,
          "get",
          "pods",
          "-l",
          "faas.example.com/function=hello",
        ]);
        const progressing = condition(f, "Progressing");
        return f.status?.codeHash !== before.status?.codeHash &&
          progressing?.reason === "RolloutComplete" &&
          pods.items.length === 1
          ? f
          : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 500 },
    );
    const rolloutMs = Date.now() - t0;
    await new Promise((r) => setTimeout(r, 3_000));
    stop = true;
    await load;
    console.log(
      `rollout: ${rolloutMs} ms; requests ok=${counts.ok} (v1 ${counts.v1}, v2 ${counts.v2}) errors=${counts.errors}`,
      failures.slice(0, 5),
    );
    expect(counts.errors).toBe(0);
    expect(counts.v1).toBeGreaterThan(0);
    expect(counts.v2).toBeGreaterThan(0);
    expect((await getOnce(url)).body).toBe("hello v2");
    // The old version's code ConfigMap goes once no pod of it is left; the new one stays.
    await waitFor("only the new code's ConfigMap", async () => {
      const cms = await kubectlJson<{ items: { metadata: { name: string } }[] }>([
        "-n",
        ns.name,
        "get",
        "configmap",
        "-l",
        "faas.example.com/function=hello",
      ]);
      const names = cms.items.map((c) => c.metadata.name);
      return names.length === 1 && names[0]?.endsWith(after.status?.codeHash ?? "?") ? true : undefined;
    });
    expect(condition(after, "Ready")?.reason).toBe("Available");
    // Ready stayed True throughout, so its transition time did not move.
    expect(condition(after, "Ready")?.lastTransitionTime).toBe(condition(before, "Ready")?.lastTransitionTime);
    await waitFor("CodeUpdated and RolledOut events", async () => {
      const reasons = await eventReasons("hello");
      return reasons.includes("CodeUpdated") && reasons.includes("RolledOut") ? true : undefined;
    });
  });

  it("leaves replicas set by others alone, and raises them back to minReplicas", async () => {
    await ns.kubectl(["scale", "deployment", "fn-hello-deploy", "--replicas=2"]);
    // A spec change that does not touch the pods: a full reconcile, same template.
    await ns.apply(
      fnYaml("hello", {
        runtime: "python",
        code: hello("hello v2"),
        minReplicas: 1,
        maxReplicas: 1,
        timeoutSeconds: 10,
        concurrency: 20,
      }),
    );
    await waitFor("the reconcile of generation 3", async () => {
      const f = await getFn("hello");
      return f.status?.observedGeneration === f.metadata.generation && f.metadata.generation >= 3 ? true : undefined;
    });
    await waitFor("2 ready replicas", async () =>
      (await getDeploy("hello")).status.readyReplicas === 2 ? true : undefined,
    );
    expect((await getDeploy("hello")).spec.replicas).toBe(2);

    await ns.kubectl(["scale", "deployment", "fn-hello-deploy", "--replicas=0"]);
    const d = await waitFor("replicas raised back to minReplicas 1", async () => {
      const dep = await getDeploy("hello");
      return dep.spec.replicas === 1 ? dep : undefined;
    });
    expect(d.spec.replicas).toBe(1);
  });

  it("scales an idle minReplicas-0 function to zero, never while activity is reported", async () => {
    await ns.apply(
      fnYaml("idle", { runtime: "python", code: hello("idle"), minReplicas: 0, maxReplicas: 1, idleSeconds: 4 }),
    );
    const f0 = await waitForReady("idle", "ScaledToZero");
    expect(f0.status?.replicas).toBe(0);
    expect(await readyPods("idle")).toHaveLength(0);

    // What a gateway does on a cold request: stamp activity, scale to 1, keep stamping while in flight.
    const stamp = () =>
      ns.kubectl([
        "annotate",
        "--overwrite",
        "function",
        "idle",
        `faas.example.com/last-request-at=${new Date().toISOString()}`,
      ]);
    await stamp();
    await ns.kubectl(["scale", "deployment", "fn-idle-deploy", "--replicas=1"]);
    const inFlightUntil = Date.now() + 10_000;
    while (Date.now() < inFlightUntil) {
      await stamp();
      expect((await getDeploy("idle")).spec.replicas).toBe(1);
      await new Promise((r) => setTimeout(r, 1_000));
    }
    const lastStamp = Date.now();
    await waitFor("scale to zero", async () => ((await getDeploy("idle")).spec.replicas === 0 ? true : undefined), {
      timeoutMs: 30_000,
      intervalMs: 250,
    });
    const idleMs = Date.now() - lastStamp;
    console.log(`idle: scaled to zero ${idleMs} ms after the last activity stamp (idleSeconds 4)`);
    expect(idleMs).toBeGreaterThanOrEqual(3_000);
    expect(idleMs).toBeLessThan(10_000);
    await waitForReady("idle", "ScaledToZero");
    await waitFor("a ScaledToZero event", async () =>
      (await eventReasons("idle")).includes("ScaledToZero") ? true : undefined,
    );
  });

  it("refuses to take over objects it does not own: Ready=False NameConflict, once, until the Function changes", async () => {
    await ns.apply(`
apiVersion: apps/v1
kind: Deployment
metadata: { name: fn-taken-deploy, namespace: ${ns.name}, labels: { faas.example.com/function: taken } }
spec:
  replicas: 0
  selector: { matchLabels: { app: someone-else } }
  template:
    metadata: { labels: { app: someone-else } }
    spec: { containers: [{ name: main, image: someone/else:1 }] }
`);
    await ns.apply(fnYaml("taken", { runtime: "python", code: hello("x"), minReplicas: 0, maxReplicas: 1 }));
    const f = await waitForReady("taken", "NameConflict");
    expect(condition(f, "Ready")?.status).toBe("False");
    await ns.kubectl(["annotate", "deployment", "fn-taken-deploy", "touched=1"]);
    await new Promise((r) => setTimeout(r, 3_000));
    const d = await getDeploy("taken");
    expect((d.spec.template.spec as { containers: { image: string }[] }).containers[0]?.image).toBe("someone/else:1");
    expect((await eventReasons("taken")).filter((r) => r === "ReconcileFailed")).toHaveLength(1);
    await ns.kubectl(["delete", "deployment", "fn-taken-deploy", "--wait=true"]);
    await ns.kubectl(["delete", "function", "taken", "--wait=true"]);

    // An unlabelled Service of the same name is found too.
    await ns.apply(`
apiVersion: v1
kind: Service
metadata: { name: fn-svctaken, namespace: ${ns.name} }
spec: { selector: { app: someone-else }, ports: [{ port: 9999 }] }
`);
    await ns.apply(fnYaml("svctaken", { runtime: "python", code: hello("x"), minReplicas: 0, maxReplicas: 1 }));
    const g = await waitForReady("svctaken", "NameConflict");
    expect(condition(g, "Ready")?.status).toBe("False");
    const svc = await kubectlJson<{ spec: { ports: { port: number }[] } }>([
      "-n",
      ns.name,
      "get",
      "service",
      "fn-svctaken",
    ]);
    expect(svc.spec.ports.map((p) => p.port)).toEqual([9999]);
    await ns.kubectl(["delete", "service", "fn-svctaken", "--wait=true"]);
    // Changing the Function retries; with the name free it now succeeds.
    await ns.apply(fnYaml("svctaken", { runtime: "python", code: hello("y"), minReplicas: 0, maxReplicas: 1 }));
    await waitForReady("svctaken", "ScaledToZero");
    await ns.kubectl(["delete", "function", "svctaken", "--wait=true"]);
  });

  it("adds an HPA only when maxReplicas > max(1, minReplicas), removes it when not, and deleting a Function removes everything", async () => {
    await ns.apply(
      fnYaml("scaler", {
        runtime: "nodejs",
        code: "export const handle = () => 'hi';",
        minReplicas: 0,
        maxReplicas: 3,
        targetCPUUtilization: 60,
      }),
    );
    await waitForReady("scaler", "ScaledToZero");
    const hpa = await kubectlJson<{ spec: { minReplicas: number; maxReplicas: number; metrics: unknown[] } }>([
      "-n",
      ns.name,
      "get",
      "hpa",
      "fn-scaler",
    ]);
    expect(hpa.spec).toMatchObject({ minReplicas: 1, maxReplicas: 3 });
    expect(JSON.stringify(hpa.spec.metrics)).toContain('"averageUtilization":60');

    await ns.apply(
      fnYaml("scaler", {
        runtime: "nodejs",
        code: "export const handle = () => 'hi';",
        minReplicas: 0,
        maxReplicas: 1,
      }),
    );
    await waitFor("the HPA removed", async () =>
      (await ns.kubectl(["get", "hpa", "fn-scaler"], { allowFailure: true })).code !== 0 ? true : undefined,
    );
    await ns.apply(
      fnYaml("scaler", {
        runtime: "nodejs",
        code: "export const handle = () => 'hi';",
        minReplicas: 0,
        maxReplicas: 3,
      }),
    );
    await waitFor("the HPA back", async () =>
      (await ns.kubectl(["get", "hpa", "fn-scaler"], { allowFailure: true })).code === 0 ? true : undefined,
    );

    await ns.kubectl(["delete", "function", "scaler", "--wait=true"]);
    await waitFor(
      "children garbage-collected",
      async () => {
        const left = await ns.kubectl([
          "get",
          "configmap,deployment,service,hpa",
          "-l",
          "faas.example.com/function=scaler",
          "-o",
          "name",
        ]);
        return left.stdout.trim() === "" ? true : undefined;
      },
      { timeoutMs: 60_000 },
    );
  });
});

describe("the API server refuses invalid Functions, naming the field", () => {
  const cases = [
    {
      name: "maxReplicas < minReplicas",
      spec: { runtime: "python", code: hello("x"), minReplicas: 3, maxReplicas: 2 },
      want: /spec\.maxReplicas/,
    },
    { name: "unknown runtime", spec: { runtime: "ruby", code: "x" }, want: /spec\.runtime: Unsupported value: "ruby"/ },
    { name: "missing code", spec: { runtime: "python" }, want: /spec\.code: .*give exactly one of code and package/ },
    {
      name: "code and package",
      spec: { runtime: "python", code: "x", package: { digest: `sha256:${"a".repeat(64)}` } },
      want: /spec\.code: .*give exactly one of code and package/,
    },
    {
      name: "bad package digest",
      spec: { runtime: "python", package: { digest: "sha256:abc" } },
      want: /spec\.package\.digest/,
    },
    { name: "empty code", spec: { runtime: "python", code: "" }, want: /spec\.code/ },
    { name: "reserved env", spec: { runtime: "python", code: "x", env: { FAAS_PORT: "1" } }, want: /spec\.env/ },
    { name: "bad name", spec: { runtime: "python", code: "x" }, fnName: "Bad_Name", want: /metadata\.name/ },
    {
      name: "spec.codeFile (a file for `faas deploy -f`, given to kubectl)",
      spec: { runtime: "python", handler: "echo.handle", codeFile: "echo.py" },
      want: /spec\.codeFile: .*read only by `faas deploy -f`.*put the source in spec\.code/,
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const r = await ns.kubectl(["apply", "-f", "-"], {
        input: fnYaml(c.fnName ?? "invalid", c.spec),
        allowFailure: true,
      });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(c.want);
      expect((await ns.kubectl(["get", "function", "invalid"], { allowFailure: true })).code).not.toBe(0);
    });
  }
});

describe("operator restarts and leader election", () => {
  afterEach(async () => {
    await Promise.all([...running].map((op) => op.stop("SIGKILL")));
  });

  it("reports a runner image that is not there as Ready=False ImagePullFailed, with a Warning event", async () => {
    const op = startOperator([], {
      FAAS_NODE_RUNNER_IMAGE: "faas-no-such-runner:latest",
      FAAS_IMAGE_PULL_POLICY: "Never",
    });
    await ns.apply(
      fnYaml("noimage", { runtime: "nodejs", code: "export const handle = () => 1;", minReplicas: 1, maxReplicas: 1 }),
    );
    const f = await waitForReady("noimage", "ImagePullFailed", 60_000);
    expect(condition(f, "Ready")?.status).toBe("False");
    await waitFor("an ImagePullFailed event", async () =>
      (await eventReasons("noimage")).includes("ImagePullFailed") ? true : undefined,
    );
    await op.stop();
    await ns.kubectl(["delete", "function", "noimage", "--wait=true"]);
  });

  it("killed mid-way and restarted, converges with nothing duplicated", async () => {
    const names = ["conv-a", "conv-b", "conv-c"];
    // One worker: killed after its first reconcile, the others are not done.
    const first = startOperator([], { FAAS_OPERATOR_WORKERS: "1" });
    await waitFor("caches synced", async () => (first.logs.some((l) => l.msg === "caches synced") ? true : undefined));
    await ns.apply(
      names
        .map((n) => fnYaml(n, { runtime: "python", code: hello(n), minReplicas: 1, maxReplicas: 1 }))
        .join("\n---\n"),
    );
    await waitFor(
      "the first reconcile to start",
      async () => (first.logs.some((l) => l.msg === "reconciled") ? true : undefined),
      {
        intervalMs: 20,
      },
    );
    await first.stop("SIGKILL");
    const atKill = await ns.kubectl(["get", "deployment,function", "-o", "name"]);
    console.log(
      `restart: killed after ${reconciled(first)} reconcile(s); objects then:`,
      atKill.stdout.trim().split("\n").join(" "),
    );
    const second = startOperator();
    for (const n of names) await waitForReady(n, "Available");
    for (const n of names) {
      for (const kind of ["configmap", "deployment", "service"]) {
        const objs = await ns.kubectl(["get", kind, "-l", `faas.example.com/function=${n}`, "-o", "name"]);
        expect(objs.stdout.trim().split("\n"), `${kind} of ${n}`).toHaveLength(1);
      }
      expect(await readyPods(n)).toHaveLength(1);
      expect((await eventReasons(n)).filter((r) => r === "Created").length).toBeLessThanOrEqual(1);
    }
    await second.stop();
    await ns.kubectl(["delete", "function", ...names, "--wait=true"]);
  });

  it("with two operators only the leader reconciles; the other takes over when it goes", async () => {
    const lease = ["--leader-elect", "--lease-namespace", ns.name, "--lease-name", "op-test"];
    const a = startOperator(lease, { POD_NAME: "op-a" });
    const b = startOperator(lease, { POD_NAME: "op-b" });
    const holder = async () =>
      (await kubectlJson<{ spec: { holderIdentity?: string } }>(["-n", ns.name, "get", "lease", "op-test"])).spec
        .holderIdentity;
    const first = await waitFor("a leader", async () => ((await holder()) ? holder() : undefined));
    const [leader, follower] = first === "op-a" ? [a, b] : [b, a];
    await ns.apply(fnYaml("led", { runtime: "python", code: hello("led"), minReplicas: 0, maxReplicas: 1 }));
    await waitForReady("led", "ScaledToZero");
    expect(reconciled(leader, "led")).toBeGreaterThan(0);
    expect(reconciled(follower)).toBe(0);
    expect(follower.logs.some((l) => l.msg === "caches synced")).toBe(true);

    // A graceful stop releases the lease: the follower takes over within a retry period.
    let t0 = Date.now();
    expect(await leader.stop("SIGTERM")).toBe(0);
    await waitFor(
      "the follower leading",
      async () => (follower.logs.some((l) => l.msg === "became leader") ? true : undefined),
      {
        timeoutMs: 30_000,
        intervalMs: 100,
      },
    );
    console.log(`leader election: takeover after a graceful stop in ${Date.now() - t0} ms`);
    await ns.apply(fnYaml("led2", { runtime: "python", code: hello("led2"), minReplicas: 0, maxReplicas: 1 }));
    await waitForReady("led2", "ScaledToZero");
    expect(reconciled(follower, "led2")).toBeGreaterThan(0);

    // A crashed leader (no release): the lease expires after its 15 s, then a new one leads.
    const c = startOperator(lease, { POD_NAME: "op-c" });
    await waitFor("op-c synced", async () => (c.logs.some((l) => l.msg === "caches synced") ? true : undefined));
    t0 = Date.now();
    await follower.stop("SIGKILL");
    await waitFor("op-c leading", async () => (c.logs.some((l) => l.msg === "became leader") ? true : undefined), {
      timeoutMs: 45_000,
      intervalMs: 200,
    });
    const takeoverMs = Date.now() - t0;
    console.log(`leader election: takeover after a crash in ${takeoverMs} ms`);
    expect(takeoverMs).toBeGreaterThanOrEqual(10_000);
    expect(await holder()).toBe("op-c");
    await ns.kubectl(["delete", "function", "led", "led2", "--wait=true"]);
  });
});

/**
 * deploy/operator.yaml as it is (image, RBAC rules, probes, security context,
 * two replicas with leader election), moved into the test namespace: its
 * objects there, cluster-scoped names made unique, and the operator watching
 * only this namespace, so it never meets another test's functions.
 */
describe("in the cluster, from deploy/operator.yaml", () => {
  const suffix = () => ns.name;
  interface Obj {
    kind: string;
    metadata: { name: string; namespace?: string };
    subjects?: { namespace: string }[];
    roleRef?: { name: string };
    spec?: { template: { spec: { containers: { args?: string[]; env?: { name: string; value?: string }[] }[] } } };
  }
  const manifest = (): string => {
    const docs = parseAllDocuments(readFileSync(join(repoRoot, "deploy/operator.yaml"), "utf8")).map(
      (d) => d.toJS() as Obj,
    );
    return docs
      .map((o) => {
        if (o.kind === "ClusterRole" || o.kind === "ClusterRoleBinding") o.metadata.name = `faas-operator-${suffix()}`;
        else o.metadata.namespace = ns.name;
        if (o.roleRef?.name === "faas-operator") o.roleRef.name = `faas-operator-${suffix()}`;
        for (const subject of o.subjects ?? []) subject.namespace = ns.name;
        const container = o.spec?.template.spec.containers[0];
        if (o.kind === "Deployment" && container) {
          container.args = ["--namespace", ns.name];
          container.env = [
            ...(container.env ?? []).filter((e) => e.name !== "FAAS_LOG_LEVEL"),
            { name: "FAAS_LOG_LEVEL", value: "debug" },
          ];
        }
        return stringify(o);
      })
      .join("---\n");
  };
  const pods = async () =>
    (
      await kubectlJson<{ items: { metadata: { name: string; deletionTimestamp?: string } }[] }>([
        "-n",
        ns.name,
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/name=faas-operator",
      ])
    ).items
      .filter((p) => !p.metadata.deletionTimestamp)
      .map((p) => p.metadata.name);
  const holder = async () =>
    (await kubectlJson<{ spec: { holderIdentity?: string } }>(["-n", ns.name, "get", "lease", "faas-operator"])).spec
      .holderIdentity;
  const reconcilesIn = async (pod: string) =>
    (await ns.kubectl(["logs", pod])).stdout.split("\n").filter((l) => l.includes('"msg":"reconciled"')).length;

  afterAll(async () => {
    await ns.kubectl(["delete", "function", "--all", "--wait=true"], { allowFailure: true });
    await ns.kubectl(["delete", "deployment", "faas-operator", "--wait=true"], { allowFailure: true });
    await kubectl(["delete", "clusterrole,clusterrolebinding", `faas-operator-${suffix()}`, "--ignore-not-found"], {
      allowFailure: true,
    });
  });

  it("runs two replicas under its ServiceAccount's RBAC; one leads and reconciles, the other takes over", async () => {
    await ns.apply(manifest());
    await ns.kubectl(["rollout", "status", "deployment/faas-operator", "--timeout=180s"], { timeoutMs: 200_000 });
    const names = await pods();
    expect(names).toHaveLength(2);
    const leader = await waitFor("a lease holder", async () => (await holder()) || undefined);
    expect(names).toContain(leader);
    const follower = names.find((n) => n !== leader) ?? "";
    expect(follower).not.toBe("");

    await ns.apply(
      fnYaml("incluster", { runtime: "python", code: hello("in cluster"), minReplicas: 1, maxReplicas: 2 }),
    );
    const f = await waitForReady("incluster", "Available");
    expect(f.status?.readyReplicas).toBe(1);
    expect((await ns.kubectl(["get", "hpa", "fn-incluster", "-o", "name"])).stdout.trim()).toBe(
      "horizontalpodautoscaler.autoscaling/fn-incluster",
    );
    const [p] = await readyPods("incluster");
    expect((await getOnce(`http://${p?.status.podIP}:8080/invoke`)).body).toBe("in cluster");
    expect(await reconcilesIn(leader)).toBeGreaterThan(0);
    expect(await reconcilesIn(follower)).toBe(0);
    // RBAC is enough for everything it does: no "forbidden" anywhere in its logs.
    expect((await ns.kubectl(["logs", leader])).stdout).not.toMatch(/forbidden/i);

    const t0 = Date.now();
    await ns.kubectl(["delete", "pod", leader, "--wait=false"]);
    const next = await waitFor(
      "a new leader",
      async () => {
        const h = await holder();
        return h && h !== leader ? h : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    console.log(`in-cluster: ${next} took over from ${leader} in ${Date.now() - t0} ms`);
    // The released lease goes to whichever candidate asks first: the follower or the replacement pod.
    expect(await pods()).toContain(next);
    await ns.apply(fnYaml("incluster2", { runtime: "python", code: hello("x"), minReplicas: 0, maxReplicas: 1 }));
    await waitForReady("incluster2", "ScaledToZero");
    expect(await reconcilesIn(next)).toBeGreaterThan(0);
    for (const other of (await pods()).filter((n) => n !== next)) expect(await reconcilesIn(other)).toBe(0);
  });
});
