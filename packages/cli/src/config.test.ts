import { DEFAULT_GATEWAY_CONFIG } from "@faas/gateway";
import { describe, expect, it } from "vitest";
import { loadCliConfig } from "./config.js";

describe("loadCliConfig", () => {
  it("pins the defaults", () => {
    const cfg = loadCliConfig({ HOME: "/home/ada", PATH: "/bin" });
    expect(cfg).toEqual({
      dataDir: "/home/ada/.faas",
      gatewayUrl: undefined,
      adminToken: undefined,
      color: "auto",
      python: "python3",
      npm: "npm",
      registry: undefined,
      clusterArch: undefined,
      node: process.execPath,
      runnerBaseEnv: { PATH: "/bin", HOME: "/home/ada" },
      loadTimeoutMs: 10_000,
      cluster: { context: undefined, kubeconfig: undefined, namespace: undefined },
      gateway: DEFAULT_GATEWAY_CONFIG,
      operatorEnv: {},
    });
  });

  it("reads the overrides", () => {
    const cfg = loadCliConfig({
      HOME: "/h",
      FAAS_DATA_DIR: "/data",
      FAAS_GATEWAY: "http://gw:9000",
      FAAS_ADMIN_TOKEN: "t0ken",
      NO_COLOR: "1",
      FAAS_GATEWAY_PORT: "9001",
      FAAS_LOAD_TIMEOUT_MS: "2500",
      FAAS_CONTEXT: "prod",
      FAAS_KUBECONFIG: "/k/config",
      FAAS_NAMESPACE: "team-a",
    });
    expect(cfg).toMatchObject({
      loadTimeoutMs: 2500,
      cluster: { context: "prod", kubeconfig: "/k/config", namespace: "team-a" },
      dataDir: "/data",
      gatewayUrl: "http://gw:9000",
      adminToken: "t0ken",
      color: "never",
      gateway: { port: 9001, adminToken: "t0ken" },
    });
    expect(Object.keys(cfg.operatorEnv).sort()).toEqual([
      "FAAS_ADMIN_TOKEN",
      "FAAS_CONTEXT",
      "FAAS_DATA_DIR",
      "FAAS_GATEWAY",
      "FAAS_GATEWAY_PORT",
      "FAAS_KUBECONFIG",
      "FAAS_LOAD_TIMEOUT_MS",
      "FAAS_NAMESPACE",
    ]);
  });

  it("gives runners only PATH, HOME, LANG and TZ, never the caller's secrets", () => {
    const cfg = loadCliConfig({
      PATH: "/usr/bin",
      HOME: "/h",
      LANG: "C.UTF-8",
      TZ: "UTC",
      FAAS_ADMIN_TOKEN: "secret",
      AWS_SECRET_ACCESS_KEY: "secret",
      GITHUB_TOKEN: "secret",
    });
    expect(cfg.runnerBaseEnv).toEqual({ PATH: "/usr/bin", HOME: "/h", LANG: "C.UTF-8", TZ: "UTC" });
  });

  it("refuses a load timeout that is not a positive whole number of ms", () => {
    for (const bad of ["0", "-5", "1.5", "ten"]) {
      expect(() => loadCliConfig({ FAAS_LOAD_TIMEOUT_MS: bad })).toThrow(/FAAS_LOAD_TIMEOUT_MS/);
    }
  });

  it("FORCE_COLOR turns colour on without a TTY; NO_COLOR wins over it", () => {
    expect(loadCliConfig({ FORCE_COLOR: "1" }).color).toBe("always");
    expect(loadCliConfig({ FORCE_COLOR: "1", NO_COLOR: "1" }).color).toBe("never");
  });
});
