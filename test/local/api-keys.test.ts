/**
 * API keys end to end in local mode, through the real binary: `faas up`, keys
 * made and revoked with `faas keys`, invocations over HTTP. 401 without a key,
 * 403 with a wrong one or another function's, 200 with the right one in either
 * header; a revoked key fails on the next request; no key appears in any log,
 * in `faas list`, in `faas keys list` or in the data directory; a function
 * without `auth` behaves as it always did.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { faas, startUp, type Up } from "../support/cli.js";
import { call } from "../support/http.js";

/** Prints every request header it gets (so its log shows what reached the runner) and returns them. */
const HANDLER = `import json, sys

def handle(req):
    headers = {k.lower(): v for k, v in req.headers.items()}
    print("headers " + json.dumps(headers, sort_keys=True), flush=True)
    return headers
`;

const manifest = (name: string, auth?: string): string => `apiVersion: faas.example.com/v1
kind: Function
metadata:
  name: ${name}
spec:
  runtime: python
  codeFile: headers.py
  handler: headers.handle
${auth === undefined ? "" : `  auth: ${auth}\n`}`;

let dir: string;
let dataDir: string;
let up: Up;
const keys: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "faas-keys-e2e-"));
  dataDir = join(dir, "data");
  await writeFile(join(dir, "headers.py"), HANDLER);
  const docs = [
    manifest("locked", "apiKey"),
    manifest("other", "apiKey"),
    manifest("nokeys", "apiKey"),
    manifest("open"),
  ];
  await writeFile(join(dir, "functions.yaml"), docs.join("---\n"));
  // Debug logs on stderr: the most the gateway ever logs.
  up = await startUp(dataDir, ["-f", join(dir, "functions.yaml"), "--no-examples", "--log-level", "debug"]);
}, 60_000);

afterAll(async () => {
  if (up !== undefined && up.proc.exitCode === null && up.proc.signalCode === null) {
    up.proc.kill("SIGTERM");
    await up.exited;
  }
  await rm(dir, { recursive: true, force: true });
});

async function createKey(fn: string): Promise<string> {
  const run = await faas(dataDir, ["keys", "create", fn]);
  expect(run.code, run.stderr).toBe(0);
  const key = run.stdout.trim();
  expect(key).toMatch(/^fk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
  expect(run.stderr).toContain("shown this once");
  keys.push(key);
  return key;
}

const invoke = (fn: string, headers: Record<string, string> = {}) => call(`${up.url}/invoke/${fn}`, { headers });
const idOf = (key: string): string => key.split("_")[1] as string;

describe("API keys in local mode", () => {
  it("401 without a key, 403 with a wrong or another function's key, 200 with the right one", async () => {
    const mine = await createKey("locked");
    const theirs = await createKey("other");

    const none = await invoke("locked");
    expect(none.status).toBe(401);
    expect(none.json()).toMatchObject({ error: { code: "UNAUTHORIZED" } });

    for (const headers of <Record<string, string>[]>[
      { authorization: `Bearer ${theirs}` },
      { "x-faas-key": `${mine.slice(0, -1)}${mine.endsWith("A") ? "B" : "A"}` },
      { "x-faas-key": "fk_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" },
    ]) {
      const r = await invoke("locked", headers);
      expect(r.status, JSON.stringify(headers)).toBe(403);
      expect(r.json()).toMatchObject({ error: { code: "FORBIDDEN" } });
    }

    const bearer = await invoke("locked", { authorization: `Bearer ${mine}` });
    expect(bearer.status).toBe(200);
    expect(bearer.json()).not.toHaveProperty("authorization");
    const header = await invoke("locked", { "x-faas-key": mine });
    expect(header.status).toBe(200);
    expect(header.json()).not.toHaveProperty("x-faas-key");
    expect((await invoke("other", { "x-faas-key": theirs })).status).toBe(200);
  });

  it("refuses everything for a function with auth: apiKey and no keys: 401 without a key, 403 with one", async () => {
    expect((await invoke("nokeys")).status).toBe(401);
    expect((await invoke("nokeys", { "x-faas-key": keys[0] as string })).status).toBe(403);
  });

  it("revokes a key: the next request with it gets 403, the function's other keys still work", async () => {
    const a = await createKey("locked");
    const b = await createKey("locked");
    expect((await invoke("locked", { "x-faas-key": a })).status).toBe(200);
    const run = await faas(dataDir, ["keys", "revoke", idOf(a)]);
    expect(run.code, run.stderr).toBe(0);
    expect((await invoke("locked", { "x-faas-key": a })).status).toBe(403);
    expect((await invoke("locked", { "x-faas-key": b })).status).toBe(200);
    const listed = JSON.parse((await faas(dataDir, ["keys", "list", "locked", "--json"])).stdout) as { id: string }[];
    expect(listed.map((k) => k.id)).not.toContain(idOf(a));
    expect(listed.map((k) => k.id)).toContain(idOf(b));
    const again = await faas(dataDir, ["keys", "revoke", idOf(a)]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("no API key");
  });

  it("leaves a function without auth as it was: no key needed, Authorization reaches the handler", async () => {
    const r = await invoke("open", { authorization: "Bearer the-functions-own-token" });
    expect(r.status).toBe(200);
    expect(r.json()).toMatchObject({ authorization: "Bearer the-functions-own-token" });
  });

  it("`faas keys create` for an unknown function exits 4", async () => {
    const run = await faas(dataDir, ["keys", "create", "missing"]);
    expect(run.code).toBe(4);
  });

  it("shows the auth mode and key count in `faas list`, and no key anywhere: list, logs, data dir", async () => {
    const table = await faas(dataDir, ["list"]);
    expect(table.stdout).toMatch(/^locked\s.*apiKey \(\d+ keys?\)/m);
    expect(table.stdout).toMatch(/^open\s.*\snone\s/m);
    const summaries = JSON.parse((await faas(dataDir, ["list", "--json"])).stdout) as {
      name: string;
      auth: string;
      apiKeys: number;
    }[];
    expect(summaries.find((s) => s.name === "nokeys")).toMatchObject({ auth: "apiKey", apiKeys: 0 });
    expect(summaries.find((s) => s.name === "other")).toMatchObject({ auth: "apiKey", apiKeys: 1 });

    // What the runner logged shows the headers it got: never a key.
    const logs = await faas(dataDir, ["logs", "locked"]);
    expect(logs.stdout).toContain("headers {");

    // Listings show ids, never a key's hash either.
    const listings = [
      table.stdout,
      JSON.stringify(summaries),
      (await faas(dataDir, ["keys", "list", "--json"])).stdout,
    ];
    expect(listings.join("\n")).not.toMatch(/[0-9a-f]{64}/);

    const everything = [
      table.stdout,
      JSON.stringify(summaries),
      (await faas(dataDir, ["keys", "list"])).stdout,
      (await faas(dataDir, ["keys", "list", "--json"])).stdout,
      logs.stdout,
      (await faas(dataDir, ["logs", "other"])).stdout,
      up.stderr(),
      ...(await filesUnder(dataDir)),
    ].join("\n");
    expect(keys.length).toBeGreaterThanOrEqual(4);
    for (const key of keys) {
      expect(everything).not.toContain(key);
      expect(everything).not.toContain(key.slice(20));
    }
    // The gateway did log at debug level, and the data dir does hold the keys' records.
    expect(up.stderr().length).toBeGreaterThan(0);
    expect(everything).toContain(idOf(keys[0] as string));
  });
});

async function filesUnder(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(root, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(await readFile(join(e.parentPath, e.name), "utf8"));
  }
  return out;
}
