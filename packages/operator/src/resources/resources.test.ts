import {
  FUNCTION_LABEL,
  type FunctionSpecInput,
  makeFunction,
  POOL_CLAIM_FILE,
  POOL_LABEL,
  POOL_STATE_IDLE,
  POOL_STATE_LABEL,
  POOL_TOKEN_SECRET,
} from "@faas/api";
import { describe, expect, it } from "vitest";
import { DEFAULT_OPERATOR_CONFIG } from "../config.js";
import { buildConfigMap } from "./config-map.js";
import {
  buildDeployment,
  buildDeploymentForCreate,
  CODE_HASH_ANNOTATION,
  containerResources,
  ENV_CODE_MAX_BYTES,
  startsWithoutVolumes,
} from "./deployment.js";
import { buildHpa, wantsHpa } from "./hpa.js";
import type { FunctionObject } from "./labels.js";
import { buildPoolDeployment, buildPoolTokenSecret } from "./pool.js";
import { configState, type DigestedObject, digestData } from "./references.js";
import { buildService } from "./service.js";

const cfg = DEFAULT_OPERATOR_CONFIG;
const PY = "def handle(req):\n    return 'hello from runner'\n";

function fn(name: string, spec: Partial<FunctionSpecInput> = {}): FunctionObject {
  const f = makeFunction(name, { runtime: "python", code: PY, ...spec });
  return { ...f, metadata: { ...f.metadata, namespace: "ns1", uid: `uid-${name}`, generation: 1 } } as FunctionObject;
}

const ownerRef = (name: string) => ({
  apiVersion: "faas.example.com/v1",
  kind: "Function",
  name,
  uid: `uid-${name}`,
  controller: true,
  blockOwnerDeletion: true,
});

describe("buildConfigMap", () => {
  const cases = [
    {
      name: "python: main.py and function.json without the code",
      given: fn("hello"),
      want: {
        name: /^fn-hello-code-[0-9a-f]{16}$/,
        files: ["function.json", "main.py"],
        codeFile: "main.py",
        loadSpec: { name: "hello", runtime: "python", handler: "main.handle", timeoutSeconds: 30, env: {} },
      },
    },
    {
      name: "nodejs with its own handler module and env",
      given: fn("hi", {
        runtime: "nodejs",
        handler: "index.run",
        code: "export const run = () => 1;",
        env: { A: "b" },
      }),
      want: {
        name: /^fn-hi-code-[0-9a-f]{16}$/,
        files: ["function.json", "index.mjs"],
        codeFile: "index.mjs",
        loadSpec: { name: "hi", runtime: "nodejs", handler: "index.run", timeoutSeconds: 30, env: { A: "b" } },
      },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const cm = buildConfigMap(c.given);
      expect(cm.metadata?.name).toMatch(c.want.name);
      expect(cm.immutable).toBe(true);
      expect(cm.metadata?.namespace).toBe("ns1");
      expect(cm.metadata?.labels?.[FUNCTION_LABEL]).toBe(c.given.metadata.name);
      expect(cm.metadata?.ownerReferences).toEqual([ownerRef(c.given.metadata.name)]);
      expect(Object.keys(cm.data ?? {}).sort()).toEqual(c.want.files);
      expect(cm.data?.[c.want.codeFile]).toBe(c.given.spec.code);
      expect(JSON.parse(cm.data?.["function.json"] ?? "")).toEqual(c.want.loadSpec);
    });
  }
});

describe("buildDeployment", () => {
  const cases = [
    {
      name: "python defaults",
      given: fn("hello"),
      want: { image: "faas-python-runner:latest", grace: 3 + 30 + 5 },
    },
    {
      name: "nodejs with a long timeout",
      given: fn("slow", { runtime: "nodejs", code: "export const handle = () => 1;", timeoutSeconds: 120 }),
      want: { image: "faas-node-runner:latest", grace: 3 + 120 + 5 },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const d = buildDeployment(c.given, cfg);
      const name = c.given.metadata.name;
      expect(d.metadata?.name).toBe(`fn-${name}-deploy`);
      expect(d.metadata?.ownerReferences).toEqual([ownerRef(name)]);
      expect(d.spec?.replicas).toBeUndefined();
      expect(d.spec?.selector).toEqual({ matchLabels: { [FUNCTION_LABEL]: name } });
      expect(d.spec?.strategy).toEqual({ type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } });
      const pod = d.spec?.template.spec;
      expect(d.spec?.template.metadata?.labels?.[FUNCTION_LABEL]).toBe(name);
      expect(d.spec?.template.metadata?.annotations?.[CODE_HASH_ANNOTATION]).toMatch(/^[0-9a-f]{16}$/);
      expect(pod?.automountServiceAccountToken).toBe(false);
      expect(pod?.terminationGracePeriodSeconds).toBe(c.want.grace);
      expect(pod?.securityContext).toMatchObject({
        runAsNonRoot: true,
        runAsUser: 10001,
        seccompProfile: { type: "RuntimeDefault" },
      });
      const ctr = pod?.containers[0];
      expect(ctr?.image).toBe(c.want.image);
      expect(ctr?.imagePullPolicy).toBe("IfNotPresent");
      const configMap = buildConfigMap(c.given).metadata?.name;
      expect(configMap).toBe(`fn-${name}-code-${d.spec?.template.metadata?.annotations?.[CODE_HASH_ANNOTATION]}`);
      // No volume: function.json and the code, as the code ConfigMap holds them, as literal env values.
      const data = buildConfigMap(c.given).data ?? {};
      const codeFile = c.given.spec.runtime === "python" ? "main.py" : "main.mjs";
      expect(ctr?.env).toEqual([
        { name: "FAAS_PORT", value: "8080" },
        { name: "FAAS_HOST", value: "0.0.0.0" },
        { name: "FAAS_FUNCTION_SPEC", value: expect.any(String) },
        { name: "FAAS_FUNCTION_CODE", value: data[codeFile] },
      ]);
      expect(JSON.parse(ctr?.env?.[2]?.value ?? "")).toEqual(JSON.parse(data["function.json"] ?? ""));
      expect(ctr?.ports).toEqual([{ name: "http", containerPort: 8080, protocol: "TCP" }]);
      expect(ctr?.readinessProbe?.httpGet).toEqual({ path: "/readyz", port: "http" });
      expect(ctr?.livenessProbe?.httpGet).toEqual({ path: "/healthz", port: "http" });
      expect(ctr?.lifecycle?.preStop?.sleep?.seconds).toBeGreaterThanOrEqual(1);
      // /tmp is the writable layer, capped like the emptyDir it replaces.
      expect(ctr?.resources).toEqual({
        requests: { cpu: "100m", memory: "64Mi", "ephemeral-storage": "0" },
        limits: { cpu: "1", memory: "256Mi", "ephemeral-storage": "64Mi" },
      });
      expect(ctr?.securityContext).toEqual({
        runAsNonRoot: true,
        runAsUser: 10001,
        readOnlyRootFilesystem: false,
        allowPrivilegeEscalation: false,
        capabilities: { drop: ["ALL"] },
        seccompProfile: { type: "RuntimeDefault" },
      });
      expect(ctr?.volumeMounts).toBeUndefined();
      expect(pod?.volumes).toBeUndefined();
    });
  }

  it("mounts the code ConfigMap and a read-only root with /tmp when the code is too big for the environment", () => {
    const big = fn("big", { code: `${PY}${"# padding\n".repeat(ENV_CODE_MAX_BYTES / 10 + 1)}` });
    expect(startsWithoutVolumes(big)).toBe(false);
    const pod = buildDeployment(big, cfg).spec?.template.spec;
    const ctr = pod?.containers[0];
    expect(ctr?.env).toEqual([
      { name: "FAAS_PORT", value: "8080" },
      { name: "FAAS_HOST", value: "0.0.0.0" },
      { name: "FAAS_CODE_DIR", value: "/code" },
    ]);
    expect(ctr?.securityContext?.readOnlyRootFilesystem).toBe(true);
    expect(ctr?.resources).toEqual({
      requests: { cpu: "100m", memory: "64Mi" },
      limits: { cpu: "1", memory: "256Mi" },
    });
    expect(ctr?.volumeMounts).toEqual([
      { name: "code", mountPath: "/code", readOnly: true },
      { name: "tmp", mountPath: "/tmp" },
    ]);
    expect(pod?.volumes?.[0]?.configMap?.name).toBe(buildConfigMap(big).metadata?.name);
    expect(pod?.volumes?.[1]?.emptyDir).toEqual({ sizeLimit: "64Mi" });
    // Just under the limit still goes without volumes.
    expect(startsWithoutVolumes(fn("edge", { code: "x".repeat(ENV_CODE_MAX_BYTES) }))).toBe(true);
  });

  it("tells the runner where to announce itself, with its identity from the downward API", () => {
    const url = "http://faas-gateway.faas-system.svc:8001/announce";
    const env = buildDeployment(fn("hello"), cfg, undefined, { announceUrl: url }).spec?.template.spec?.containers[0]
      ?.env;
    expect(env).toEqual(
      expect.arrayContaining([
        { name: "FAAS_ANNOUNCE_URL", value: url },
        { name: "FAAS_POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
        { name: "FAAS_POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
        { name: "FAAS_POD_UID", valueFrom: { fieldRef: { fieldPath: "metadata.uid" } } },
        { name: "FAAS_POD_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
      ]),
    );
    expect(buildDeployment(fn("hello"), cfg).spec?.template.spec?.containers[0]?.env?.map((e) => e.name)).not.toContain(
      "FAAS_ANNOUNCE_URL",
    );
  });

  it("changes the pod template's code hash when code or config change, and only then", () => {
    const hash = (f: FunctionObject) =>
      buildDeployment(f, cfg).spec?.template.metadata?.annotations?.[CODE_HASH_ANNOTATION];
    const base = hash(fn("a"));
    expect(hash(fn("a"))).toBe(base);
    expect(hash(fn("a", { minReplicas: 1, maxReplicas: 9 }))).toBe(base);
    expect(hash(fn("a", { code: `${PY}# v2\n` }))).not.toBe(base);
    expect(hash(fn("a", { env: { X: "1" } }))).not.toBe(base);
    expect(hash(fn("a", { timeoutSeconds: 5 }))).not.toBe(base);
  });

  it("sets replicas only in the version that creates it", () => {
    expect(buildDeploymentForCreate(fn("z", { minReplicas: 0 }), cfg).spec?.replicas).toBe(0);
    expect(buildDeploymentForCreate(fn("z", { minReplicas: 2 }), cfg).spec?.replicas).toBe(2);
  });
});

describe("buildService", () => {
  it("is a ClusterIP on 8080 → http selecting the function's pods, with the function label", () => {
    const s = buildService(fn("hello"));
    expect(s.metadata?.name).toBe("fn-hello");
    expect(s.metadata?.labels?.[FUNCTION_LABEL]).toBe("hello");
    expect(s.metadata?.ownerReferences).toEqual([ownerRef("hello")]);
    expect(s.spec).toEqual({
      type: "ClusterIP",
      selector: { [FUNCTION_LABEL]: "hello" },
      ports: [{ name: "http", port: 8080, targetPort: "http", protocol: "TCP" }],
    });
  });
});

describe("HPA", () => {
  const cases = [
    { name: "0..1: no HPA", given: { minReplicas: 0, maxReplicas: 1 }, want: false },
    { name: "1..1: no HPA", given: { minReplicas: 1, maxReplicas: 1 }, want: false },
    { name: "3..3: no HPA", given: { minReplicas: 3, maxReplicas: 3 }, want: false },
    { name: "0..2: HPA 1..2", given: { minReplicas: 0, maxReplicas: 2 }, want: true },
    { name: "1..5: HPA 1..5", given: { minReplicas: 1, maxReplicas: 5 }, want: true },
  ];
  for (const c of cases) {
    it(c.name, () => expect(wantsHpa(c.given)).toBe(c.want));
  }

  it("targets the Deployment on CPU utilization with minReplicas max(1, min)", () => {
    const h = buildHpa(fn("cpu", { minReplicas: 0, maxReplicas: 5, targetCPUUtilization: 70 }), cfg);
    expect(h.metadata?.name).toBe("fn-cpu");
    expect(h.metadata?.ownerReferences).toEqual([ownerRef("cpu")]);
    expect(h.spec).toEqual({
      scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: "fn-cpu-deploy" },
      minReplicas: 1,
      maxReplicas: 5,
      metrics: [
        { type: "Resource", resource: { name: "cpu", target: { type: "Utilization", averageUtilization: 70 } } },
      ],
    });
  });

  it("carries a scale-down stabilization window when configured", () => {
    const h = buildHpa(fn("cpu", { minReplicas: 1, maxReplicas: 5 }), { hpaScaleDownStabilizationSeconds: 15 });
    expect(h.spec?.behavior).toEqual({ scaleDown: { stabilizationWindowSeconds: 15 } });
  });
});

describe("buildPoolDeployment", () => {
  const d = buildPoolDeployment("python", "team-a", 2, cfg);
  const pod = d.spec?.template.spec;
  const c = pod?.containers[0];
  it("selects only idle pool pods, so a claimed pod (relabelled) leaves the ReplicaSet", () => {
    expect(d.metadata?.name).toBe("faas-pool-python");
    expect(d.metadata?.namespace).toBe("team-a");
    expect(d.spec?.replicas).toBe(2);
    expect(d.spec?.selector.matchLabels).toEqual({ [POOL_LABEL]: "python", [POOL_STATE_LABEL]: POOL_STATE_IDLE });
    expect(d.spec?.template.metadata?.labels).toMatchObject(d.spec?.selector.matchLabels ?? { missing: true });
    // Never the function label: Services, HPAs and function Deployments must not see pool pods.
    expect(d.spec?.template.metadata?.labels?.[FUNCTION_LABEL]).toBeUndefined();
  });
  it("runs the runtime's image in pool mode with the token from the Secret, no code", () => {
    expect(c?.image).toBe(cfg.images.python);
    const env = Object.fromEntries((c?.env ?? []).map((e) => [e.name, e]));
    expect(env.FAAS_POOL_CLAIM_FILE?.value).toBe(POOL_CLAIM_FILE);
    expect(env.FAAS_SPECIALIZE_TOKEN?.valueFrom?.secretKeyRef).toEqual({ name: POOL_TOKEN_SECRET, key: "token" });
    // Empty: the images default to FAAS_CODE_DIR=/code, and a runner started with its code never specializes.
    expect(env.FAAS_CODE_DIR?.value).toBe("");
    expect(pod?.volumes?.find((v) => v.name === "state")?.emptyDir).toBeDefined();
    expect(c?.volumeMounts?.find((m) => m.name === "state")?.mountPath).toBe("/var/run/faas");
  });
  it("is locked down like a function pod, with small requests and the function limits", () => {
    expect(pod?.automountServiceAccountToken).toBe(false);
    expect(pod?.securityContext?.runAsNonRoot).toBe(true);
    expect(c?.securityContext?.readOnlyRootFilesystem).toBe(true);
    expect(c?.securityContext?.capabilities?.drop).toEqual(["ALL"]);
    expect(c?.resources?.requests).toEqual(cfg.poolRequests);
    expect(c?.resources?.limits).toEqual(cfg.limits);
    // Long enough for the preStop sleep and the longest function timeout the spec allows.
    expect(pod?.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(cfg.preStopSleepSeconds + 900);
  });
  it("gives each new token Secret a fresh random token", () => {
    const a = buildPoolTokenSecret("ns").stringData?.token;
    const b = buildPoolTokenSecret("ns").stringData?.token;
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(a).not.toBe(b);
  });
});

describe("secrets, config and resources on the Deployment", () => {
  const withRefs = fn("sec", {
    env: [
      { name: "PLAIN", value: "visible" },
      { name: "PASSWORD", valueFrom: { secretKeyRef: { name: "db", key: "password" } } },
      { name: "MODE", valueFrom: { configMapKeyRef: { name: "settings", key: "mode" } } },
    ],
    envFrom: [{ secretRef: { name: "api-keys" } }],
    secrets: [{ name: "tls", mountPath: "/etc/secrets/tls" }],
  });

  it("leaves referenced values to the kubelet: never in the code ConfigMap", () => {
    const cm = buildConfigMap(withRefs);
    const loadSpec = JSON.parse(cm.data?.["function.json"] as string);
    expect(loadSpec.env).toEqual({ PLAIN: "visible" });
    const d = buildDeployment(withRefs, cfg, "cafe");
    const pod = d.spec?.template.spec;
    const c = pod?.containers[0];
    expect(c?.env?.filter((e) => !e.name.startsWith("FAAS_"))).toEqual([
      { name: "PASSWORD", valueFrom: { secretKeyRef: { name: "db", key: "password" } } },
      { name: "MODE", valueFrom: { configMapKeyRef: { name: "settings", key: "mode" } } },
    ]);
    expect(c?.envFrom).toEqual([{ secretRef: { name: "api-keys" } }]);
    expect(c?.volumeMounts).toContainEqual({ name: "secret-0", mountPath: "/etc/secrets/tls", readOnly: true });
    expect(pod?.volumes).toContainEqual({ name: "secret-0", secret: { secretName: "tls", defaultMode: 0o440 } });
    expect(pod?.securityContext?.fsGroup).toBe(10001);
    expect(d.spec?.template.metadata?.annotations?.["faas.example.com/config-hash"]).toBe("cafe");
  });

  it("has no config hash, envFrom, fsGroup or secret volume without references", () => {
    const d = buildDeployment(fn("plain"), cfg);
    expect(d.spec?.template.metadata?.annotations?.["faas.example.com/config-hash"]).toBeUndefined();
    expect(d.spec?.template.spec?.containers[0]?.envFrom).toBeUndefined();
    expect(d.spec?.template.spec?.securityContext?.fsGroup).toBeUndefined();
    expect(d.spec?.template.spec?.volumes).toBeUndefined();
  });

  const resourceCases: {
    name: string;
    given: FunctionSpecInput["resources"];
    want: { requests: Record<string, string>; limits: Record<string, string> };
  }[] = [
    {
      name: "unset: the operator's defaults",
      given: undefined,
      want: { requests: { ...cfg.requests }, limits: { ...cfg.limits } },
    },
    {
      name: "all four set",
      given: { requests: { cpu: "250m", memory: "128Mi" }, limits: { cpu: 2, memory: "512Mi" } },
      want: { requests: { cpu: "250m", memory: "128Mi" }, limits: { cpu: "2", memory: "512Mi" } },
    },
    {
      name: "a request above the default limit raises the limit",
      given: { requests: { memory: "1Gi" } },
      want: { requests: { ...cfg.requests, memory: "1Gi" }, limits: { ...cfg.limits, memory: "1Gi" } },
    },
    {
      name: "a limit below the default request lowers the request",
      given: { limits: { cpu: "50m" } },
      want: { requests: { ...cfg.requests, cpu: "50m" }, limits: { ...cfg.limits, cpu: "50m" } },
    },
  ];
  for (const c of resourceCases) {
    it(`resources: ${c.name}`, () => {
      expect(containerResources(fn("r", { resources: c.given }).spec, cfg)).toEqual(c.want);
      const d = buildDeployment(fn("r", { resources: c.given }), cfg);
      // Without a /tmp volume the container's writable layer is capped instead.
      expect(d.spec?.template.spec?.containers[0]?.resources).toEqual({
        requests: { ...c.want.requests, "ephemeral-storage": "0" },
        limits: { ...c.want.limits, "ephemeral-storage": "64Mi" },
      });
    });
  }
});

describe("configState", () => {
  const spec = fn("s", {
    env: [{ name: "P", valueFrom: { secretKeyRef: { name: "db", key: "p" } } }],
    envFrom: [{ configMapRef: { name: "settings" } }],
  }).spec;
  const obj = (name: string, data: Record<string, string>) =>
    digestData({
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name, namespace: "ns1", resourceVersion: "1" },
      data,
    } as never);
  const lookup = (secrets: Record<string, DigestedObject>, cms: Record<string, DigestedObject>) => ({
    secret: (_ns: string, n: string) => secrets[n],
    configMap: (_ns: string, n: string) => cms[n],
  });

  it("keeps a digest, not the data, and changes when a referenced value changes", () => {
    const a = obj("db", { p: Buffer.from("one").toString("base64") });
    expect(JSON.stringify(a)).not.toContain(Buffer.from("one").toString("base64"));
    const settings = obj("settings", { mode: "x" });
    const before = configState(spec, "ns1", lookup({ db: a }, { settings }));
    const same = configState(
      spec,
      "ns1",
      lookup({ db: obj("db", { p: Buffer.from("one").toString("base64") }) }, { settings }),
    );
    const after = configState(
      spec,
      "ns1",
      lookup({ db: obj("db", { p: Buffer.from("two").toString("base64") }) }, { settings }),
    );
    expect(before).toEqual(same);
    expect(before.missing).toEqual([]);
    expect(after.hash).not.toBe(before.hash);
  });

  it("names what is missing; a function without references has no hash", () => {
    expect(configState(spec, "ns1", lookup({}, {})).missing).toEqual(["Secret db", "ConfigMap settings"]);
    expect(configState(fn("p").spec, "ns1", lookup({}, {}))).toEqual({ hash: undefined, missing: [] });
  });
});

describe("packaged functions", () => {
  const digest = `sha256:${"ab".repeat(32)}`;
  const packaged = () =>
    fn("pkg", {
      code: undefined,
      package: { digest, registry: "http://faas-registry.faas-system.svc:5000", repository: "ns1/pkg" },
    });

  it("function.json names the package and there is no code file", () => {
    const cm = buildConfigMap(packaged());
    expect(Object.keys(cm.data ?? {})).toEqual(["function.json"]);
    const load = JSON.parse(cm.data?.["function.json"] ?? "{}");
    expect(load.package).toEqual({
      digest,
      registry: "http://faas-registry.faas-system.svc:5000",
      repository: "ns1/pkg",
    });
    expect(load.code).toBeUndefined();
  });

  it("pods get the registry's host alias and room in /tmp to unpack the package", () => {
    const aliases = [{ ip: "10.96.0.42", hostnames: ["faas-registry.faas-system.svc"] }];
    const pod = buildDeployment(packaged(), cfg, undefined, { hostAliases: aliases }).spec?.template.spec;
    expect(pod?.hostAliases).toEqual(aliases);
    expect(pod?.volumes?.find((v) => v.name === "tmp")?.emptyDir?.sizeLimit).toBe("1Gi");
    const plain = buildDeployment(fn("plain"), cfg).spec?.template.spec;
    expect(plain?.hostAliases).toBeUndefined();
    expect(plain?.volumes).toBeUndefined();
  });

  it("pool pods get the alias too: any function may claim them", () => {
    const aliases = [{ ip: "10.96.0.42", hostnames: ["faas-registry.faas-system.svc"] }];
    const pod = buildPoolDeployment("python", "ns1", 1, cfg, { hostAliases: aliases }).spec?.template.spec;
    expect(pod?.hostAliases).toEqual(aliases);
    expect(buildPoolDeployment("python", "ns1", 1, cfg).spec?.template.spec?.hostAliases).toBeUndefined();
  });
});
