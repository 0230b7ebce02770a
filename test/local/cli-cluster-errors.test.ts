/**
 * Cluster mode's exit codes without a cluster: a bad spec is refused before
 * anything is sent (2), an unreachable API server is "not reachable" (3), an
 * unknown context is a usage error (2) — the codes local mode uses.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { faas } from "../support/cli.js";

describe("faas --kubeconfig … with no cluster behind it", () => {
  let dir: string;
  let kubeconfig: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "faas-cli-nocluster-"));
    // A port that was free a moment ago: nothing listens there.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", () => r()));
    const port = (probe.address() as { port: number }).port;
    await new Promise((r) => probe.close(r));
    kubeconfig = join(dir, "config");
    writeFileSync(
      kubeconfig,
      `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:${port}", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: gone, context: {cluster: c, user: u}}]
current-context: gone
`,
    );
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("list, logs, delete, invoke and deploy exit 3 when the API server cannot be reached", async () => {
    for (const args of [["list"], ["logs", "hello"], ["delete", "hello"], ["invoke", "hello"]]) {
      const r = await faas(join(dir, "data"), ["--kubeconfig", kubeconfig, ...args]);
      expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(3);
      expect(r.stderr).toMatch(/^error: /);
    }
    const code = join(dir, "ok.py");
    writeFileSync(code, "def handle(req):\n    return 'ok'\n");
    const r = await faas(join(dir, "data"), [
      "--kubeconfig",
      kubeconfig,
      "deploy",
      "--name",
      "ok",
      "--runtime",
      "python",
      "--code",
      code,
    ]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^error: deploy ok: cannot reach the cluster \(context gone, namespace default\)/);
  });

  it("refuses a bad spec with exit 2 before talking to the cluster, and an unknown context too", async () => {
    const code = join(dir, "x.py");
    writeFileSync(code, "def handle(req): pass\n");
    const bad = await faas(join(dir, "data"), [
      "--kubeconfig",
      kubeconfig,
      "deploy",
      "--name",
      "Bad_Name",
      "--runtime",
      "python",
      "--code",
      code,
    ]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--name \(metadata\.name\)/);
    const unknown = await faas(join(dir, "data"), ["--kubeconfig", kubeconfig, "--context", "nope", "list"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/no context "nope" in the kubeconfig \(it has: gone\)/);
  });

  it("faas keys sees --kubeconfig/--context before or after its own name (they are global options too)", async () => {
    for (const args of [
      ["keys", "list", "--kubeconfig", kubeconfig, "--context", "nope"],
      ["--kubeconfig", kubeconfig, "--context", "nope", "keys", "list"],
    ]) {
      const r = await faas(join(dir, "data"), args);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/no context "nope"/);
    }
    // On the cluster (not the local gateway): an unreachable API server.
    const r = await faas(join(dir, "data"), ["keys", "list", "--kubeconfig", kubeconfig]);
    expect(r.stderr).toMatch(/cannot list|namespace default/);
  });
});
