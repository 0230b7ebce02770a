/**
 * Packaged functions end to end in local mode, through the real binary
 * (docs/packages.md): directories with dependencies deployed with
 * `faas deploy --code DIR` and `spec.codeFile: DIR`, built with pip and npm
 * from the public registries, invoked over HTTP. A second deploy of an
 * unchanged lockfile installs nothing; a requirement that does not exist and
 * a lockfile out of step with package.json exit 2 with the tool's own words
 * while the deployed version keeps serving.
 */
import { cp, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { faas, startUp, type Up } from "../support/cli.js";
import { call } from "../support/http.js";

const FIXTURES = fileURLToPath(new URL("../fixtures/packages", import.meta.url));

let dir: string;
let dataDir: string;
let up: Up;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "faas-packages-e2e-"));
  dataDir = join(dir, "data");
  await cp(FIXTURES, join(dir, "src"), { recursive: true });
  up = await startUp(dataDir, ["--no-examples"]);
}, 60_000);

afterAll(async () => {
  if (up !== undefined && up.proc.exitCode === null && up.proc.signalCode === null) {
    up.proc.kill("SIGTERM");
    await up.exited;
  }
  await rm(dir, { recursive: true, force: true });
});

const src = (name: string): string => join(dir, "src", name);
const deploy = (name: string, runtime: string, code: string) =>
  faas(dataDir, ["deploy", "--name", name, "--runtime", runtime, "--code", code]);
const invoke = (name: string, query = "") => call(`${up.url}/invoke/${name}${query}`);

describe("packaged functions in local mode", () => {
  it("a Python directory with a pure-Python dependency, a sibling module and a data file", async () => {
    const run = await deploy("slug", "python", src("py-pure"));
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain("pip install");
    expect(run.stdout).toContain("created slug");
    const res = await invoke("slug", "?title=Grüße%20aus%20Köln");
    expect(res.status, res.body).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ slug: "grusse-aus-koln", greeting: "HELLO FROM A PACKAGE!" });
  }, 120_000);

  it("a Python directory whose dependency is a compiled wheel (orjson)", async () => {
    const run = await deploy("fastjson", "python", src("py-orjson"));
    expect(run.code, run.stderr).toBe(0);
    const res = await invoke("fastjson");
    expect(res.status, res.body).toBe(200);
    expect(res.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(res.body)).toEqual({ compiled: true, orjson: "3.10.18", numbers: [1, 2, 3] });
  }, 120_000);

  it("a Node.js directory with a lockfile, deployed from YAML with spec.codeFile: DIR", async () => {
    const yaml = join(dir, "src", "node.yaml");
    await writeFile(
      yaml,
      "apiVersion: faas.example.com/v1\nkind: Function\nmetadata:\n  name: zodfn\nspec:\n  runtime: nodejs\n  codeFile: ./node-lock\n",
    );
    const run = await faas(dataDir, ["deploy", "-f", yaml]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain("npm ci");
    const res = await invoke("zodfn", "?wait=3s");
    expect(res.status, res.body).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ greeting: "Hello From A Package", waitMs: 3000 });
    // ms("") throws inside the dependency: a handler error, reported as one, and the next call is served.
    const bad = await invoke("zodfn", "?wait=");
    expect(bad.status).toBe(500);
    expect(JSON.parse(bad.body).error.code).toBe("HANDLER_ERROR");
    expect((await invoke("zodfn", "?wait=1m")).body).toContain('"waitMs":60000');
  }, 120_000);

  it("a second deploy of an unchanged lockfile installs nothing and is the same package", async () => {
    const builds = await readdir(join(dataDir, "builds"));
    const packages = await readdir(join(dataDir, "packages"));
    const started = performance.now();
    const run = await deploy("slug", "python", src("py-pure"));
    const ms = performance.now() - started;
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain("dependencies unchanged");
    expect(run.stderr).not.toMatch(/Collecting|Downloading|Installing collected/);
    expect(await readdir(join(dataDir, "builds"))).toEqual(builds);
    // The same digest: no new package in the store.
    expect(await readdir(join(dataDir, "packages"))).toEqual(packages);
    // Printed for the record; the bound is only that nothing was installed.
    console.log(`second deploy of an unchanged requirements.txt: ${ms.toFixed(0)} ms (CLI start to exit)`);
    // Two functions with the same dependencies share one build.
    const again = await deploy("slug-twin", "python", src("py-pure"));
    expect(again.code, again.stderr).toBe(0);
    expect(await readdir(join(dataDir, "builds"))).toEqual(builds);
    expect((await invoke("slug-twin", "?title=Twin")).body).toContain('"slug":"twin"');
  }, 120_000);

  it("a requirement that does not exist: exit 2 with pip's message, and the deployed version keeps serving", async () => {
    await rm(join(src("py-pure"), "requirements.txt"));
    await cp(join(src("py-missing"), "requirements.txt"), join(src("py-pure"), "requirements.txt"));
    const run = await deploy("slug", "python", src("py-pure"));
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/No matching distribution found for faas-no-such-package-7d1c3e/);
    expect(run.stderr).toContain("nothing was deployed: the versions already deployed keep serving");
    const res = await invoke("slug", "?title=Still%20Here");
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).slug).toBe("still-here");
  }, 120_000);

  it("a lockfile out of step with package.json: exit 2 with npm's message, and the deployed version keeps serving", async () => {
    const run = await deploy("zodfn", "nodejs", src("node-mismatch"));
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/npm ci.*(in sync|lock file)/is);
    expect(run.stderr).toContain("nothing was deployed: the versions already deployed keep serving");
    const res = await invoke("zodfn", "?wait=1s");
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).waitMs).toBe(1000);
  }, 120_000);

  it("a directory without its handler's module is refused before anything is built", async () => {
    const run = await faas(dataDir, ["deploy", "--name", "nomain", "--runtime", "python", "--code", src("node-lock")]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("no main.py in");
  });
});
