/**
 * Secrets and configs in local mode, through the CLI (ADR 0013): `faas secret
 * set` before and while `faas up` runs, a function reading a secret through an
 * env var and a mounted file and a config through envFrom, the store's file
 * mode, no value in `faas list`, `faas logs`, the platform's own logs or the
 * stored function, and a rotation under load that replaces the replicas with
 * no failed request.
 */
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { faas, startUp, type Up } from "../support/cli.js";

const v1 = `local-one-${randomBytes(6).toString("hex")}`;
const v2 = `local-two-${randomBytes(6).toString("hex")}`;

const READER = `apiVersion: faas.example.com/v1
kind: Function
metadata:
  name: reader
spec:
  runtime: python
  minReplicas: 1
  maxReplicas: 2
  env:
    - name: GREETING
      value: hello
    - name: DB_PASSWORD
      valueFrom:
        secretKeyRef: {name: db, key: password}
  envFrom:
    - configMapRef: {name: settings}
  secrets:
    - name: db
      mountPath: /etc/secrets/db
  code: |
    import os
    def handle(req):
        root = os.environ.get("FAAS_MOUNT_ROOT", "")
        with open(root + "/etc/secrets/db/password") as f:
            from_file = f.read()
        return {"env": os.environ["DB_PASSWORD"], "file": from_file,
                "mode": os.environ.get("MODE"), "greeting": os.environ["GREETING"], "pid": os.getpid()}
`;

interface Answer {
  env: string;
  file: string;
  mode: string;
  greeting: string;
  pid: number;
}

async function get(url: string): Promise<{ status: number; body: string }> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
    return { status: res.status, body: await res.text() };
  } catch (err) {
    return { status: 0, body: (err as Error).message };
  }
}

/** Every file under `dir` (recursively), except those named in `skip`. */
function filesUnder(dir: string, skip: readonly string[]): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (skip.includes(path)) continue;
    if (e.isDirectory()) out.push(...filesUnder(path, skip));
    else if (e.isFile()) out.push(path);
  }
  return out;
}

describe("local secrets and configs", () => {
  let dataDir: string;
  let up: Up;

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "faas-secrets-"));
    // Before `faas up`: written straight into the data directory's store.
    const set = await faas(dataDir, ["secret", "set", "db", `password=${v1}`]);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toContain("keys: password");
    expect(set.stdout).not.toContain(v1);
    expect((await faas(dataDir, ["config", "set", "settings", "MODE=blue"])).code).toBe(0);
    up = await startUp(dataDir, ["--no-examples", "--log-level", "debug"]);
    await writeFile(join(dataDir, "reader.yaml"), READER);
  }, 60_000);
  afterAll(async () => {
    up?.proc.kill("SIGTERM");
    await up?.exited;
    await rm(dataDir, { recursive: true, force: true });
  });

  it("keeps secrets and configs in 0600 files of a 0700 directory", () => {
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    for (const file of ["secrets.json", "configs.json"]) {
      expect((statSync(join(dataDir, file)).mode & 0o777).toString(8), file).toBe("600");
    }
  });

  it("refuses a function whose secret does not exist, naming the field", async () => {
    const missing = READER.replace("name: reader", "name: orphan").replace(
      "{name: db, key: password}",
      "{name: nope, key: password}",
    );
    await writeFile(join(dataDir, "orphan.yaml"), missing);
    const r = await faas(dataDir, ["deploy", "-f", join(dataDir, "orphan.yaml")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/spec\.env\.1\.valueFrom\.secretKeyRef: no secret named "nope"/);
  });

  it("resolves env from a secret and a config, and a secret mounted as a read-only file", async () => {
    const d = await faas(dataDir, ["deploy", "-f", join(dataDir, "reader.yaml")]);
    expect(d.code, d.stderr).toBe(0);
    const r = await get(`${up.url}/invoke/reader`);
    expect(r.status, r.body).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ env: v1, file: v1, mode: "blue", greeting: "hello" });
    const [version] = readdirSync(join(dataDir, "mounts", "reader"));
    const file = join(dataDir, "mounts", "reader", version as string, "etc/secrets/db/password");
    expect((statSync(file).mode & 0o777).toString(8)).toBe("400");
    expect((statSync(join(dataDir, "mounts")).mode & 0o777).toString(8)).toBe("700");
  });

  it("rotates: `faas secret set` replaces the replicas under load with no failed request", async () => {
    const before = JSON.parse((await get(`${up.url}/invoke/reader`)).body) as Answer;
    let stop = false;
    const replies: { status: number; body: string; startedAt: number }[] = [];
    const load = Array.from({ length: 6 }, async () => {
      while (!stop) {
        const startedAt = performance.now();
        const r = await get(`${up.url}/invoke/reader`);
        replies.push({ ...r, startedAt });
      }
    });
    await new Promise((r) => setTimeout(r, 500));
    const rotatedAt = performance.now();
    const set = await faas(dataDir, ["secret", "set", "db", `password=${v2}`]);
    const doneAt = performance.now();
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toContain("rolled reader");
    await new Promise((r) => setTimeout(r, 1_000));
    stop = true;
    await Promise.all(load);

    const failed = replies.filter((r) => r.status !== 200);
    expect(failed).toEqual([]);
    const answers = replies.map((r) => ({ ...r, a: JSON.parse(r.body) as Answer }));
    // Each answer is one version: env and file agree.
    expect(answers.every(({ a }) => a.env === a.file)).toBe(true);
    // Once `faas secret set` has returned, only the new value, from new processes.
    const after = answers.filter((r) => r.startedAt > doneAt);
    expect(after.length).toBeGreaterThan(0);
    expect(after.every(({ a }) => a.env === v2 && a.pid !== before.pid)).toBe(true);
    // The old version's files are removed once its replicas are gone.
    await new Promise((r) => setTimeout(r, 500));
    expect(readdirSync(join(dataDir, "mounts", "reader"))).toHaveLength(1);
    console.log(
      `local rotation under load: ${replies.length} requests, ${failed.length} failed; ` +
        `faas secret set returned after ${(doneAt - rotatedAt).toFixed(0)} ms`,
    );
  });

  it("never shows a value: faas list, secret list, logs, the stored function, the platform's logs", async () => {
    const outputs = [
      await faas(dataDir, ["list"]),
      await faas(dataDir, ["list", "--json"]),
      await faas(dataDir, ["secret", "list"]),
      await faas(dataDir, ["secret", "list", "--json"]),
      await faas(dataDir, ["config", "list"]),
      await faas(dataDir, ["logs", "reader"]),
    ];
    for (const o of outputs) expect(o.code, o.stderr).toBe(0);
    const secretList = (outputs[2]?.stdout ?? "").split("\n");
    expect(secretList.find((l) => l.startsWith("db"))).toMatch(/^db\s+password$/);
    const texts = [
      ...outputs.flatMap((o) => [o.stdout, o.stderr]),
      up.stderr(),
      // Everything in the data directory but the store itself and the mounted files.
      ...filesUnder(dataDir, [join(dataDir, "secrets.json"), join(dataDir, "mounts")]).map((f) =>
        readFileSync(f, "utf8"),
      ),
    ];
    expect(up.stderr()).toContain('"msg":"secret set"');
    for (const text of texts) {
      expect(text).not.toContain(v1);
      expect(text).not.toContain(v2);
    }
    expect(readFileSync(join(dataDir, "secrets.json"), "utf8")).toContain(v2);
  });

  it("refuses to delete a secret a function uses, and deletes it once unused", async () => {
    const refused = await faas(dataDir, ["secret", "delete", "db"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/used by reader/);
    expect((await faas(dataDir, ["delete", "reader"])).code).toBe(0);
    const deleted = await faas(dataDir, ["secret", "delete", "db"]);
    expect(deleted.code, deleted.stderr).toBe(0);
    expect((await faas(dataDir, ["secret", "list", "--json"])).stdout).toBe("[]\n");
  });
});
