import { describe, expect, it } from "vitest";
import { DEFAULT_OPERATOR_CONFIG, functionUrl, loadConfig } from "./config.js";

describe("loadConfig", () => {
  it("pins the defaults", () => {
    const c = loadConfig({}, []);
    expect(c).toMatchObject({
      namespace: undefined,
      kubeconfig: undefined,
      leaderElection: false,
      leaseName: "faas-operator",
      leaseNamespace: "faas-system",
      gatewayUrlTemplate: "http://faas-gateway.faas-system:8000/invoke/{name}",
      images: { python: "faas-python-runner:latest", nodejs: "faas-node-runner:latest" },
      imagePullPolicy: "IfNotPresent",
      requests: { cpu: "100m", memory: "64Mi" },
      limits: { cpu: "1", memory: "256Mi" },
      preStopSleepSeconds: 3,
      hpaScaleDownStabilizationSeconds: undefined,
      workers: 4,
      resyncSeconds: 300,
      idleCheckIntervalMs: 1000,
      healthPort: 0,
      logLevel: "info",
      poolSize: { python: 2, nodejs: 2 },
      poolRequests: { cpu: "100m", memory: "64Mi" },
      networkPolicy: true,
      gatewayNamespace: "faas-system",
    });
    expect(c).toEqual({ ...DEFAULT_OPERATOR_CONFIG, identity: c.identity });
  });

  const cases: { name: string; env: Record<string, string>; argv: string[]; want: Record<string, unknown> }[] = [
    { name: "--namespace", env: {}, argv: ["--namespace", "default"], want: { namespace: "default" } },
    { name: "-n=", env: {}, argv: ["-n=team-a"], want: { namespace: "team-a" } },
    { name: "env namespace", env: { FAAS_WATCH_NAMESPACE: "x" }, argv: [], want: { namespace: "x" } },
    {
      name: "network policies off (env)",
      env: { FAAS_NETWORK_POLICY: "false" },
      argv: [],
      want: { networkPolicy: false },
    },
    {
      name: "--network-policy=false wins over the environment",
      env: { FAAS_NETWORK_POLICY: "true" },
      argv: ["--network-policy=false"],
      want: { networkPolicy: false },
    },
    { name: "gateway namespace", env: { FAAS_GATEWAY_NAMESPACE: "gw" }, argv: [], want: { gatewayNamespace: "gw" } },
    {
      name: "--all-namespaces wins",
      env: { FAAS_WATCH_NAMESPACE: "x" },
      argv: ["--all-namespaces"],
      want: { namespace: undefined },
    },
    { name: "--leader-elect", env: {}, argv: ["--leader-elect"], want: { leaderElection: true } },
    {
      name: "env leader election",
      env: { FAAS_LEADER_ELECT: "true", POD_NAME: "op-1", POD_NAMESPACE: "sys" },
      argv: [],
      want: { leaderElection: true, identity: "op-1", leaseNamespace: "sys" },
    },
    { name: "flag beats env", env: { FAAS_LEASE_NAME: "a" }, argv: ["--lease-name", "b"], want: { leaseName: "b" } },
    {
      name: "images and pull policy",
      env: { FAAS_PYTHON_RUNNER_IMAGE: "r/py:1", FAAS_IMAGE_PULL_POLICY: "Always" },
      argv: [],
      want: { images: { python: "r/py:1", nodejs: "faas-node-runner:latest" }, imagePullPolicy: "Always" },
    },
    {
      name: "pool size for all runtimes",
      env: { FAAS_POOL_SIZE: "0" },
      argv: [],
      want: { poolSize: { python: 0, nodejs: 0 } },
    },
    {
      name: "pool size per runtime beats the shared one, and the flag beats env",
      env: { FAAS_POOL_SIZE: "1", FAAS_POOL_SIZE_NODEJS: "4" },
      argv: ["--pool-size", "3"],
      want: { poolSize: { python: 3, nodejs: 4 } },
    },
    {
      name: "HPA stabilization",
      env: { FAAS_HPA_SCALE_DOWN_STABILIZATION_SECONDS: "10" },
      argv: [],
      want: { hpaScaleDownStabilizationSeconds: 10 },
    },
  ];
  for (const c of cases) {
    it(c.name, () => expect(loadConfig(c.env, c.argv)).toMatchObject(c.want));
  }

  it("refuses bad values and unknown flags, naming them", () => {
    expect(() => loadConfig({ FAAS_IMAGE_PULL_POLICY: "Sometimes" })).toThrow(/FAAS_IMAGE_PULL_POLICY/);
    expect(() => loadConfig({ FAAS_OPERATOR_WORKERS: "0" })).toThrow(/FAAS_OPERATOR_WORKERS/);
    expect(() => loadConfig({}, ["--bogus"])).toThrow(/--bogus/);
    expect(() => loadConfig({ FAAS_POOL_SIZE: "-1" })).toThrow(/FAAS_POOL_SIZE/);
  });

  it("fills the status URL template", () => {
    expect(functionUrl(DEFAULT_OPERATOR_CONFIG, "default", "hello")).toBe(
      "http://faas-gateway.faas-system:8000/invoke/hello",
    );
    expect(functionUrl({ gatewayUrlTemplate: "http://gw/{namespace}/{name}" }, "ns", "f")).toBe("http://gw/ns/f");
  });
});
