/**
 * The operator's reconciler and idle scaler against a real API server whose
 * answers a proxy reorders, fails and cuts. Each case runs an operator in its
 * own namespace (no leader election) with an injected clock.
 */
import { configMapPrefix, deploymentName, LAST_REQUEST_ANNOTATION, serviceName } from "@faas/api";
import { type KubeClient, type KubeObject, RESOURCES } from "@faas/kube";
import { DEFAULT_OPERATOR_CONFIG, Operator } from "@faas/operator";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { on } from "./fault-proxy.js";
import { ApiServer, apiServerSkipReason } from "./fixture.js";
import { createFunction, createNamespace, eventually, FIELD_MANAGER, randomName } from "./scene.js";

const skip = apiServerSkipReason();
const log = pino({ level: process.env.FAAS_TEST_LOG ?? "silent" });

interface Deployment extends KubeObject {
  spec?: { replicas?: number };
}

describe.skipIf(skip !== undefined)("operator against a real API server", () => {
  let api: ApiServer;
  let admin: KubeClient;
  const operators: Operator[] = [];

  beforeAll(async () => {
    api = await ApiServer.start();
    admin = api.directClient();
  }, 60_000);
  afterAll(async () => {
    for (const o of operators) await o.stop();
    await api?.stop();
  });

  /** An operator for `ns`, its clock `offsetMs` ahead of the real one (tests move it). */
  function startOperator(ns: string): { operator: Operator; started: Promise<void>; clock: { offsetMs: number } } {
    const clock = { offsetMs: 0 };
    const operator = new Operator(
      api.client(),
      { ...DEFAULT_OPERATOR_CONFIG, namespace: ns, idleCheckIntervalMs: 100, retryBaseMs: 50, retryMaxMs: 500 },
      log,
      { now: () => Date.now() + clock.offsetMs },
    );
    operators.push(operator);
    const started = operator.start();
    started.catch(() => {});
    return { operator, started, clock };
  }

  const get = <T extends KubeObject>(r: (typeof RESOURCES)[keyof typeof RESOURCES], ns: string, name: string) =>
    admin.find<T>({ ...r, namespace: ns, name });

  /** The Function's code ConfigMaps (one per code version; normally just the current one). */
  async function codeConfigMaps(ns: string, fn: string): Promise<(KubeObject & { data?: Record<string, string> })[]> {
    const list = await admin.list<KubeObject & { data?: Record<string, string> }>({
      ...RESOURCES.configmaps,
      namespace: ns,
    });
    return list.items.filter((cm) => cm.metadata.name.startsWith(`${configMapPrefix(fn)}-`));
  }

  /** The Function's children exist and its status was written. */
  async function expectReconciled(ns: string, fn: string): Promise<void> {
    await eventually(
      async () =>
        (await get(RESOURCES.deployments, ns, deploymentName(fn))) !== undefined &&
        (await get(RESOURCES.services, ns, serviceName(fn))) !== undefined &&
        (await codeConfigMaps(ns, fn)).length > 0 &&
        (await get<KubeObject & { status?: { conditions?: unknown[] } }>(RESOURCES.functions, ns, fn))?.status
          ?.conditions !== undefined,
      10_000,
      `${fn} reconciled`,
    );
  }

  describe("reconciler: start-up orderings and failures", () => {
    const cases: { name: string; arrange(ns: string): void }[] = [
      { name: "lists answered as they come", arrange: () => {} },
      {
        name: "Deployments listed before Functions",
        arrange: (ns) => {
          let release!: () => void;
          const until = new Promise<void>((r) => {
            release = r;
          });
          api.proxy.fault(on({ verb: "list", resource: "functions", namespace: ns }), { kind: "hold", until }, 1);
          void api.proxy
            .waitFor(on({ verb: "watch", resource: "deployments", namespace: ns }), 1)
            .then(() => release());
        },
      },
      {
        name: "the first Function list fails (429)",
        arrange: (ns) =>
          api.proxy.fault(on({ verb: "list", resource: "functions", namespace: ns }), { kind: "fail", status: 429 }, 1),
      },
      {
        name: "every first list fails twice (500)",
        arrange: (ns) => api.proxy.fault(on({ verb: "list", namespace: ns }), { kind: "fail", status: 500 }, 12),
      },
    ];
    for (const c of cases) {
      it(c.name, async () => {
        const ns = await createNamespace(admin);
        const fn = randomName("fn");
        await createFunction(admin, ns, fn);
        c.arrange(ns);
        const o = startOperator(ns);
        await o.started;
        expect(o.operator.synced).toBe(true);
        await expectReconciled(ns, fn);
      }, 30_000);
    }
  });

  describe("reconciler: broken watches after start-up", () => {
    const cases: { name: string; disrupt(ns: string): Promise<void> }[] = [
      {
        name: "watches cut mid-stream",
        disrupt: async (ns) => {
          expect(api.proxy.cutWatches(on({ namespace: ns }))).toBeGreaterThanOrEqual(6);
        },
      },
      {
        name: "watches answered 410 Gone",
        disrupt: async (ns) => {
          api.proxy.fault(on({ verb: "watch", namespace: ns }), { kind: "expire" }, 6);
          api.proxy.cutWatches(on({ namespace: ns }));
        },
      },
      { name: "the API server restarts", disrupt: () => api.restartApiServer({ downMs: 500 }) },
    ];
    for (const c of cases) {
      it(c.name, async () => {
        const ns = await createNamespace(admin);
        const first = randomName("fn");
        await createFunction(admin, ns, first);
        const o = startOperator(ns);
        await o.started;
        await expectReconciled(ns, first);
        await c.disrupt(ns);
        // A new Function and a code change to the first both reach their children.
        const second = randomName("fn");
        await createFunction(admin, ns, second);
        await admin.mergePatch(
          { ...RESOURCES.functions, namespace: ns, name: first },
          { spec: { code: "def handle(req):\n    return 'v2'\n" } },
          FIELD_MANAGER,
        );
        await expectReconciled(ns, second);
        await eventually(
          async () => (await codeConfigMaps(ns, first)).some((cm) => JSON.stringify(cm.data ?? {}).includes("v2")),
          15_000,
          "the code change applied",
        );
      }, 40_000);
    }
  });

  describe("references to Secrets and ConfigMaps", () => {
    interface Template extends KubeObject {
      spec?: {
        template?: {
          metadata?: { annotations?: Record<string, string> };
          spec?: { containers?: { env?: { name: string; valueFrom?: unknown }[]; envFrom?: unknown[] }[] };
        };
      };
    }
    const configHash = async (ns: string, fn: string): Promise<string | undefined> =>
      (await get<Template>(RESOURCES.deployments, ns, deploymentName(fn)))?.spec?.template?.metadata?.annotations?.[
        "faas.example.com/config-hash"
      ];
    const hashChangesFrom = (ns: string, fn: string, before: string | undefined, what: string) =>
      eventually(
        async () => {
          const now = await configHash(ns, fn);
          return now !== undefined && now !== before;
        },
        10_000,
        what,
      );

    it("rolls on a change to the data of what a function refers to, not on metadata, and never copies a value", async () => {
      const ns = await createNamespace(admin);
      const fn = randomName("fn");
      await createFunction(admin, ns, fn, {
        env: [
          { name: "A", value: "literal" },
          { name: "PW", valueFrom: { secretKeyRef: { name: "db", key: "password" } } },
        ],
        envFrom: [{ configMapRef: { name: "settings" } }],
      });
      const o = startOperator(ns);
      await o.started;
      await expectReconciled(ns, fn);
      // Neither exists yet: the pods would wait; the operator says why.
      const missing = await configHash(ns, fn);
      expect(missing).toMatch(/^[0-9a-f]{16}$/);
      await eventually(
        async () =>
          (
            await admin.list<KubeObject & { reason?: string; message?: string }>({ ...RESOURCES.events, namespace: ns })
          ).items.some(
            (e) => e.reason === "ReferenceMissing" && e.message?.includes("Secret db, ConfigMap settings") === true,
          ),
        10_000,
        "a ReferenceMissing event",
      );
      const secretRef = { ...RESOURCES.secrets, namespace: ns, name: "db" };
      await admin.create(
        { ...RESOURCES.secrets, namespace: ns },
        { apiVersion: "v1", kind: "Secret", metadata: { name: "db" }, stringData: { password: "pw-one" } },
        FIELD_MANAGER,
      );
      await hashChangesFrom(ns, fn, missing, "a roll for the new Secret");
      const one = await configHash(ns, fn);
      await admin.mergePatch(secretRef, { stringData: { password: "pw-two" } }, FIELD_MANAGER);
      await hashChangesFrom(ns, fn, one, "a roll for the changed value");
      const two = await configHash(ns, fn);
      await admin.mergePatch(secretRef, { metadata: { labels: { team: "a" } } }, FIELD_MANAGER);
      await admin.create(
        { ...RESOURCES.configmaps, namespace: ns },
        { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "settings" }, data: { MODE: "blue" } },
        FIELD_MANAGER,
      );
      await hashChangesFrom(ns, fn, two, "a roll for the new ConfigMap");
      const three = await configHash(ns, fn);
      // The label change alone did not roll: only the ConfigMap did, once.
      await new Promise((r) => setTimeout(r, 300));
      expect(await configHash(ns, fn)).toBe(three);
      const dep = await get<Template>(RESOURCES.deployments, ns, deploymentName(fn));
      const container = dep?.spec?.template?.spec?.containers?.[0];
      expect(container?.env?.find((e) => e.name === "PW")).toEqual({
        name: "PW",
        valueFrom: { secretKeyRef: { name: "db", key: "password" } },
      });
      expect(container?.envFrom).toEqual([{ configMapRef: { name: "settings" } }]);
      const everything = JSON.stringify([dep, await codeConfigMaps(ns, fn)]);
      expect(everything).toContain("literal");
      expect(everything).not.toContain("pw-one");
      expect(everything).not.toContain("pw-two");
    }, 40_000);
  });

  describe("idle scaler", () => {
    const scaleOf = async (ns: string, fn: string) =>
      (await get<Deployment>(RESOURCES.deployments, ns, deploymentName(fn)))?.spec?.replicas;
    const scaleTo = (ns: string, fn: string, replicas: number) =>
      admin.mergePatch(
        { ...RESOURCES.deployments, namespace: ns, name: deploymentName(fn), subresource: "scale" },
        { spec: { replicas } },
        FIELD_MANAGER,
      );
    /**
     * The operator's own cache has the Deployment at 1 replica, so its scale-up
     * is stamped on the real clock: a watch event arriving after the test moves
     * the clock would stamp the scale-up in the future and hold off the scaler.
     */
    const seenAtOne = (operator: Operator, ns: string, fn: string) =>
      eventually(
        () => operator.deployments.get(`${ns}/${deploymentName(fn)}`)?.spec?.replicas === 1,
        5000,
        "the operator sees 1 replica",
      );
    const stamp = (ns: string, fn: string, at: Date) =>
      admin.mergePatch(
        { ...RESOURCES.functions, namespace: ns, name: fn },
        { metadata: { annotations: { [LAST_REQUEST_ANNOTATION]: at.toISOString() } } },
        FIELD_MANAGER,
      );

    const cases: { name: string; spec: Record<string, unknown>; lastRequestAgoS?: number; want: number }[] = [
      { name: "idle past idleSeconds: scaled to zero", spec: { idleSeconds: 30 }, want: 0 },
      { name: "a request stamped recently: kept", spec: { idleSeconds: 30 }, lastRequestAgoS: 5, want: 1 },
      { name: "minReplicas 1: never scaled to zero", spec: { idleSeconds: 30, minReplicas: 1 }, want: 1 },
    ];
    for (const c of cases) {
      it(c.name, async () => {
        const ns = await createNamespace(admin);
        const fn = randomName("idle");
        await createFunction(admin, ns, fn, c.spec);
        const o = startOperator(ns);
        await o.started;
        await expectReconciled(ns, fn);
        if ((await scaleOf(ns, fn)) === 0) await scaleTo(ns, fn, 1);
        await eventually(async () => (await scaleOf(ns, fn)) === 1, 5000, "at 1 replica");
        await seenAtOne(o.operator, ns, fn);
        if (c.lastRequestAgoS !== undefined) {
          // Stamped as of the jumped clock, and in the operator's cache before the clock jumps.
          const at = new Date(Date.now() + 120_000 - c.lastRequestAgoS * 1000).toISOString();
          await stamp(ns, fn, new Date(at));
          await eventually(
            () => o.operator.functions.get(`${ns}/${fn}`)?.metadata.annotations?.[LAST_REQUEST_ANNOTATION] === at,
            5000,
            "the stamp in the operator's cache",
          );
        }
        // Jump the operator's clock past idleSeconds since the scale-up it saw.
        o.clock.offsetMs = 120_000;
        if (c.want === 0) await eventually(async () => (await scaleOf(ns, fn)) === 0, 15_000, "scaled to zero");
        else {
          await new Promise((r) => setTimeout(r, 1000));
          expect(await scaleOf(ns, fn)).toBe(c.want);
        }
      }, 30_000);
    }

    it("a gateway's scale-up between the idle scaler's read and its write wins", async () => {
      const ns = await createNamespace(admin);
      const fn = randomName("race");
      await createFunction(admin, ns, fn, { idleSeconds: 30 });
      const o = startOperator(ns);
      await o.started;
      await expectReconciled(ns, fn);
      await scaleTo(ns, fn, 1);
      await eventually(async () => (await scaleOf(ns, fn)) === 1, 5000, "at 1 replica");
      await seenAtOne(o.operator, ns, fn);
      // Hold the operator's scale-to-zero in the proxy while a gateway changes the Deployment.
      let release!: () => void;
      const held = api.proxy.fault(
        on({ verb: "patch", resource: "deployments/scale", namespace: ns }),
        { kind: "hold", until: new Promise<void>((r) => (release = r)) },
        1,
      );
      o.clock.offsetMs = 120_000;
      await api.proxy.waitFor(on({ verb: "patch", resource: "deployments/scale", namespace: ns }), 1);
      await admin.mergePatch(
        { ...RESOURCES.deployments, namespace: ns, name: deploymentName(fn) },
        { spec: { replicas: 2 } },
        FIELD_MANAGER,
      );
      await stamp(ns, fn, new Date(Date.now() + 120_000));
      release();
      await eventually(
        () => api.proxy.log.some((r) => r.namespace === ns && r.resource === "deployments/scale" && r.status === 409),
        5000,
        "the held patch answered 409",
      );
      expect(held.hits).toBe(1);
      await new Promise((r) => setTimeout(r, 500));
      expect(await scaleOf(ns, fn)).toBe(2);
    }, 30_000);

    it("grants the gateway `get` on exactly what functions take env from, and takes it back with the last of them", async () => {
      const ns = await createNamespace(admin);
      const a = randomName("env");
      const b = randomName("env");
      const roleRef = {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "roles",
        namespace: ns,
        name: "faas-gateway-references",
      };
      const bindingRef = { ...roleRef, plural: "rolebindings" };
      type Role = KubeObject & { rules?: { resources: string[]; resourceNames: string[]; verbs: string[] }[] };
      const rules = async (): Promise<string | undefined> => {
        const role = await admin.find<Role>(roleRef);
        return role?.rules?.map((r) => `${r.resources.join()}:${r.resourceNames.join()}:${r.verbs.join()}`).join(" ");
      };
      const o = startOperator(ns);
      await o.started;
      await createFunction(admin, ns, a, {
        env: [{ name: "P", valueFrom: { secretKeyRef: { name: "db", key: "password" } } }],
        secrets: [{ name: "tls", mountPath: "/etc/tls" }],
      });
      await eventually(async () => (await rules()) === "secrets:db:get", 5000, "a Role for Secret db");
      // The binding follows the Role.
      let binding: (KubeObject & { subjects?: unknown[] }) | undefined;
      await eventually(
        async () => {
          binding = await admin.find<KubeObject & { subjects?: unknown[] }>(bindingRef);
          return binding !== undefined;
        },
        5000,
        "the RoleBinding",
      );
      expect(binding?.subjects).toEqual([{ kind: "ServiceAccount", name: "faas-gateway", namespace: "faas-system" }]);
      await createFunction(admin, ns, b, {
        envFrom: [{ configMapRef: { name: "settings" } }, { secretRef: { name: "api" } }],
      });
      await eventually(
        async () => (await rules()) === "secrets:api,db:get configmaps:settings:get",
        5000,
        "the Role widened to b's references",
      );
      await admin.delete({ ...RESOURCES.functions, namespace: ns, name: a });
      await eventually(
        async () => (await rules()) === "secrets:api:get configmaps:settings:get",
        5000,
        "db no longer granted",
      );
      await admin.delete({ ...RESOURCES.functions, namespace: ns, name: b });
      await eventually(
        async () => (await admin.find(roleRef)) === undefined && (await admin.find(bindingRef)) === undefined,
        5000,
        "Role and binding gone with the last referencing function",
      );
    }, 30_000);
  });
});
