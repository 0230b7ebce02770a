import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { clusterTarget, connectCluster } from "./cluster-context.js";
import { loadCliConfig } from "./config.js";
import { withGlobals } from "./context.js";
import { CliError } from "./exit-codes.js";

const kubeconfig = join(mkdtempSync(join(tmpdir(), "faas-ctx-")), "config");
writeFileSync(
  kubeconfig,
  `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: dev, context: {cluster: c, user: u, namespace: team-a}}, {name: bare, context: {cluster: c, user: u}}]
current-context: bare
`,
);

describe("cluster context", () => {
  it("stays local without --context, --kubeconfig or FAAS_CONTEXT (a namespace alone is not enough)", () => {
    expect(clusterTarget(loadCliConfig({}))).toBeUndefined();
    expect(clusterTarget(withGlobals(loadCliConfig({}), { namespace: "x" }))).toBeUndefined();
  });

  it("takes FAAS_CONTEXT, and flags over the environment", () => {
    const env = loadCliConfig({ FAAS_CONTEXT: "dev", FAAS_NAMESPACE: "envns" });
    expect(clusterTarget(env)).toEqual({ context: "dev", kubeconfig: undefined, namespace: "envns" });
    expect(clusterTarget(withGlobals(env, { context: "prod", kubeconfig: "/k", namespace: "n" }))).toEqual({
      context: "prod",
      kubeconfig: "/k",
      namespace: "n",
    });
  });

  it("uses the context's namespace, else default, unless -n says otherwise", async () => {
    expect((await connectCluster({ kubeconfig, context: "dev", namespace: undefined })).namespace).toBe("team-a");
    expect((await connectCluster({ kubeconfig, context: "bare", namespace: undefined })).namespace).toBe("default");
    const c = await connectCluster({ kubeconfig, context: "dev", namespace: "other" });
    expect(c.namespace).toBe("other");
    expect(c.where).toBe("context dev, namespace other");
  });

  it("refuses an unknown context with exit 2, naming the ones there are", async () => {
    const err = await connectCluster({ kubeconfig, context: "nope", namespace: undefined }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CliError);
    expect((err as CliError).exitCode).toBe(2);
    expect((err as CliError).message).toMatch(/no context "nope".*dev, bare/);
  });
});
