/**
 * The package registry (deploy/registry.yaml, ADR 0016), as `cluster up`
 * deploys it: the Deployment is ready and runs as non-root; from the host,
 * through `@faas/kube`'s port-forward to the registry pod (the CLI's push
 * path), a blob and an OCI manifest are pushed by digest and read back with
 * the right `Docker-Content-Digest`; the data outlives the pod (its
 * replacement serves the same manifest); and of the pods in the cluster only
 * those of functions and of the warm pool reach the registry's ClusterIP:5000.
 * Prints what was measured.
 */
import { createHash, randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { KubeClient, PortForwarder } from "@faas/kube";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kubeconfigPath, kubectl, kubectlJson, useTestNamespace, waitFor } from "./fixture.js";
import { FUNCTION_LABEL } from "./support/platform.js";
import { blocked, type Probe, probe, proberYaml } from "./support/probe.js";

const SYSTEM_NS = "faas-system";
const SELECTOR = "app.kubernetes.io/name=faas-registry";
const PORT = 5000;
const POOL_LABEL = "faas.example.com/pool";
const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const ns = useTestNamespace("registry");
const repo = `faas-test/registry-${randomBytes(3).toString("hex")}`;
const measured: string[] = [];
const note = (line: string) => {
  measured.push(line);
  console.log(`[registry] ${line}`);
};

const sha256 = (b: Buffer | string) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

interface PodJson {
  metadata: { name: string; deletionTimestamp?: string };
  spec: {
    securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
    containers: { securityContext?: { readOnlyRootFilesystem?: boolean; capabilities?: { drop?: string[] } } }[];
  };
  status?: {
    podIP?: string;
    conditions?: { type: string; status: string }[];
    containerStatuses?: { ready: boolean }[];
  };
}

async function readyRegistryPods(): Promise<PodJson[]> {
  const pods = await kubectlJson<{ items: PodJson[] }>(["-n", SYSTEM_NS, "get", "pods", "-l", SELECTOR]);
  return pods.items.filter(
    (p) =>
      !p.metadata.deletionTimestamp && p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
  );
}

/** A port-forward of our own to a ready registry pod (as the CLI pushes); `base` is its URL. */
async function forward(kube: KubeClient): Promise<{ base: string; pods: readonly string[]; close(): Promise<void> }> {
  const pf = new PortForwarder(kube, { namespace: SYSTEM_NS, selector: SELECTOR, port: PORT });
  const port = await pf.start();
  return { base: `http://127.0.0.1:${port}`, pods: pf.podsUsed, close: () => pf.close() };
}

async function pushBlob(base: string, body: Buffer): Promise<string> {
  const digest = sha256(body);
  const start = await fetch(`${base}/v2/${repo}/blobs/uploads/`, { method: "POST" });
  expect(start.status).toBe(202);
  const location = new URL(start.headers.get("location") ?? "", base);
  location.searchParams.set("digest", digest);
  const put = await fetch(location, {
    method: "PUT",
    headers: { "content-type": "application/octet-stream" },
    body: new Uint8Array(body),
  });
  expect(put.status).toBe(201);
  expect(put.headers.get("docker-content-digest")).toBe(digest);
  return digest;
}

async function getManifest(
  base: string,
  digest: string,
): Promise<{ status: number; digest: string | null; body: string }> {
  const res = await fetch(`${base}/v2/${repo}/manifests/${digest}`, { headers: { accept: OCI_MANIFEST } });
  return { status: res.status, digest: res.headers.get("docker-content-digest"), body: await res.text() };
}

/**
 * On this project's cluster the registry is a process of this machine: the
 * uid it runs as (undefined on another cluster, e.g. kind).
 */
function registryProcessUid(): number | undefined {
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      if (cmdline[0] !== "/registry" || cmdline[2] !== "/etc/faas-registry/config.yml") continue;
      const uid = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
      if (uid) return Number(uid[1]);
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return undefined;
}

describe("the package registry", () => {
  let kube: KubeClient;
  const pushed = { config: "", layer: "", manifest: "", manifestBody: "", layerBody: Buffer.alloc(0) };

  beforeAll(() => {
    kube = KubeClient.load({ kubeconfig: kubeconfigPath });
  });

  afterAll(() => {
    console.log(`[registry] measured:\n  ${measured.join("\n  ")}`);
  });

  it("is a ready Deployment whose pod runs as non-root with a read-only root filesystem", async () => {
    const dep = await kubectlJson<{
      spec: { replicas: number; strategy: { type: string } };
      status: { readyReplicas?: number };
    }>(["-n", SYSTEM_NS, "get", "deployment", "faas-registry"]);
    expect(dep.spec.replicas).toBe(1);
    expect(dep.spec.strategy.type).toBe("Recreate");
    expect(dep.status.readyReplicas).toBe(1);
    const [pod] = await readyRegistryPods();
    expect(pod).toBeDefined();
    const p = pod as PodJson;
    expect(p.spec.securityContext?.runAsNonRoot).toBe(true);
    expect(p.spec.securityContext?.runAsUser).toBe(10001);
    expect(p.spec.containers[0]?.securityContext?.readOnlyRootFilesystem).toBe(true);
    expect(p.spec.containers[0]?.securityContext?.capabilities?.drop).toEqual(["ALL"]);
    const pvc = await kubectlJson<{ status: { phase: string } }>(["-n", SYSTEM_NS, "get", "pvc", "faas-registry-data"]);
    expect(pvc.status.phase).toBe("Bound");
    const uid = registryProcessUid();
    note(
      `pod ${p.metadata.name} ready; claim faas-registry-data Bound; registry process uid: ${uid ?? "not on this host"}`,
    );
    if (uid !== undefined) expect(uid).toBe(10001);
  });

  it("takes a blob and an OCI manifest by digest through a port-forward and serves them back", async () => {
    const pf = await forward(kube);
    try {
      const t0 = Date.now();
      const config = Buffer.from(JSON.stringify({ runtime: "python", handler: "main.handle", dependencies: null }));
      pushed.layerBody = gzipSync(
        Buffer.concat([Buffer.from("def handle(req):\n    return 'hi'\n"), randomBytes(256)]),
      );
      pushed.config = await pushBlob(pf.base, config);
      pushed.layer = await pushBlob(pf.base, pushed.layerBody);
      pushed.manifestBody = JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        artifactType: "application/vnd.faas.package.v1",
        config: {
          mediaType: "application/vnd.faas.package.config.v1+json",
          digest: pushed.config,
          size: config.length,
        },
        layers: [
          {
            mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
            digest: pushed.layer,
            size: pushed.layerBody.length,
          },
        ],
      });
      pushed.manifest = sha256(pushed.manifestBody);
      const put = await fetch(`${pf.base}/v2/${repo}/manifests/${pushed.manifest}`, {
        method: "PUT",
        headers: { "content-type": OCI_MANIFEST },
        body: pushed.manifestBody,
      });
      expect(put.status).toBe(201);
      expect(put.headers.get("docker-content-digest")).toBe(pushed.manifest);
      note(`pushed ${repo}@${pushed.manifest} (2 blobs) via pod ${pf.pods.join(",")} in ${Date.now() - t0} ms`);

      const m = await getManifest(pf.base, pushed.manifest);
      expect(m.status).toBe(200);
      expect(m.digest).toBe(pushed.manifest);
      expect(m.body).toBe(pushed.manifestBody);
      const blob = await fetch(`${pf.base}/v2/${repo}/blobs/${pushed.layer}`);
      expect(blob.status).toBe(200);
      expect(blob.headers.get("docker-content-digest")).toBe(pushed.layer);
      const bytes = Buffer.from(await blob.arrayBuffer());
      expect(sha256(bytes)).toBe(pushed.layer);
      note(
        `GET manifest: ${m.status}, Docker-Content-Digest ${m.digest}; GET layer: ${blob.status}, ${bytes.length} bytes`,
      );
      // A digest the registry does not hold is unknown, not something else.
      const missing = await getManifest(pf.base, sha256("not pushed"));
      expect(missing.status).toBe(404);
    } finally {
      await pf.close();
    }
  });

  it("keeps its data when the pod is replaced", async () => {
    expect(pushed.manifest).not.toBe("");
    const [before] = await readyRegistryPods();
    const old = before?.metadata.name as string;
    const t0 = Date.now();
    await kubectl(["-n", SYSTEM_NS, "delete", "pod", old, "--wait=true", "--timeout=120s"], { timeoutMs: 150_000 });
    const fresh = await waitFor(
      "a new ready registry pod",
      async () => {
        const pods = (await readyRegistryPods()).filter((p) => p.metadata.name !== old);
        return pods[0]?.metadata.name;
      },
      { timeoutMs: 180_000 },
    );
    note(`deleted pod ${old}; ${fresh} ready after ${Date.now() - t0} ms`);
    const pf = await forward(kube);
    try {
      const m = await getManifest(pf.base, pushed.manifest);
      expect(pf.pods).toEqual([fresh]);
      expect(m.status).toBe(200);
      expect(m.digest).toBe(pushed.manifest);
      expect(m.body).toBe(pushed.manifestBody);
      const blob = await fetch(`${pf.base}/v2/${repo}/blobs/${pushed.layer}`);
      expect(sha256(Buffer.from(await blob.arrayBuffer()))).toBe(pushed.layer);
      note(`after the restart, ${fresh} serves ${repo}@${pushed.manifest}: ${m.status}, layer intact`);
    } finally {
      await pf.close();
    }
  });

  it("admits function and pool pods on its ClusterIP:5000 and no other pod", async () => {
    await ns.apply(
      [
        proberYaml("plain"),
        proberYaml("function", { [FUNCTION_LABEL]: "registry-probe" }),
        proberYaml("pool", { [POOL_LABEL]: "python" }),
      ].join("\n---\n"),
    );
    await ns.kubectl(["wait", "--for=condition=Ready", "pod/plain", "pod/function", "pod/pool", "--timeout=120s"], {
      timeoutMs: 150_000,
    });
    const svc = await kubectlJson<{ spec: { clusterIP: string; ports: { port: number }[] } }>([
      "-n",
      SYSTEM_NS,
      "get",
      "service",
      "faas-registry",
    ]);
    const ip = svc.spec.clusterIP;
    expect(svc.spec.ports.map((p) => p.port)).toEqual([PORT]);
    const record = (pod: string, p: Probe) => note(`${ns.name}/${pod} -> ${ip}:${PORT}/v2/: ${p.outcome} (${p.ms} ms)`);
    // The engine programs new pods a moment after they start: wait for both
    // the refusal and the admission to be in place before judging.
    const t0 = Date.now();
    const plain = await waitFor(
      "the unlabelled pod to be refused",
      async () => {
        const p = await probe(ns.name, "plain", ip, PORT, "/v2/");
        return blocked(p) ? p : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    record("plain", plain);
    for (const pod of ["function", "pool"]) {
      const p = await waitFor(
        `the ${pod} pod to be admitted`,
        async () => {
          const r = await probe(ns.name, pod, ip, PORT, "/v2/");
          return /^http HTTP\/1\.\d 200/.test(r.outcome) ? r : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 500 },
      );
      record(pod, p);
    }
    // Settled: the unlabelled pod is still refused.
    const again = await probe(ns.name, "plain", ip, PORT, "/v2/");
    record("plain", again);
    expect(blocked(again)).toBe(true);
    note(`policy settled ${Date.now() - t0} ms after the probers were ready`);
  });
});
