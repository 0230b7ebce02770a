/**
 * Package builds without the network: reproducible digests (modes, umask,
 * hard links, file order), the snapshot the digest is made from, two builds
 * of one dependency key at once, and what a requirements file may say. The
 * dependency tool is a stand-in script (FAAS_NPM's role) so the orderings can
 * be forced; real pip and npm run in test/local/packages.test.ts.
 */
import { chmod, link, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { buildPackage, installLocal } from "./build.js";
import { buildDependencies } from "./deps.js";
import { checkRequirements, readSource, SourceError } from "./source.js";

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "faas-build-test-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function writeTree(root: string, files: Record<string, string>, mode = 0o644): Promise<void> {
  for (const [rel, text] of Object.entries(files)) {
    const path = join(root, rel);
    await mkdir(join(path, ".."), { recursive: true });
    await writeFile(path, text);
    await chmod(path, mode);
  }
}

const target = { kind: "local" as const, python: "python3", npm: "npm" };
const FILES = { "main.py": "def handle(req):\n    return 'x'\n", "lib/util.py": "X = 1\n", "data/a.txt": "a\n" };

describe("package digests", () => {
  it("are the same for the same files whatever their modes (umask 022 or 077), hard links or where they are", async () => {
    const a = join(dir, "a");
    const b = join(dir, "b");
    await writeTree(a, FILES, 0o644);
    await writeTree(b, FILES, 0o600);
    // A hard link in b, a plain copy in a: the same bytes either way.
    await rm(join(b, "data/a.txt"));
    await writeFile(join(dir, "outside.txt"), "a\n");
    await link(join(dir, "outside.txt"), join(b, "data/a.txt"));
    const req = { runtime: "python" as const, handler: "main.handle" };
    const pa = await buildPackage({ dir: a, ...req }, { dataDir: join(dir, "data-a"), target });
    const pb = await buildPackage({ dir: b, ...req }, { dataDir: join(dir, "data-b"), target });
    expect(pb.artifact.digest).toBe(pa.artifact.digest);
    expect(pb.artifact.layers[0]?.digest).toBe(pa.artifact.layers[0]?.digest);
    // An executable file is a different package (0755 in the layer).
    await chmod(join(b, "lib/util.py"), 0o700);
    const pc = await buildPackage({ dir: b, ...req }, { dataDir: join(dir, "data-b"), target });
    expect(pc.artifact.digest).not.toBe(pa.artifact.digest);
    for (const p of [pa, pb, pc]) await p.cleanup();
  });

  it("change with any byte of the code", async () => {
    const a = join(dir, "a");
    await writeTree(a, FILES);
    const req = { dir: a, runtime: "python" as const, handler: "main.handle" };
    const first = await buildPackage(req, { dataDir: join(dir, "d"), target });
    await writeFile(join(a, "data/a.txt"), "b\n");
    const second = await buildPackage(req, { dataDir: join(dir, "d"), target });
    expect(second.artifact.digest).not.toBe(first.artifact.digest);
    await first.cleanup();
    await second.cleanup();
  });

  it("name what the local store holds: files changed after the snapshot do not reach it", async () => {
    const a = join(dir, "a");
    await writeTree(a, FILES);
    const dataDir = join(dir, "d");
    const pkg = await buildPackage({ dir: a, runtime: "python", handler: "main.handle" }, { dataDir, target });
    await writeFile(join(a, "main.py"), "edited during the build\n");
    const root = await installLocal(dataDir, pkg);
    expect(await readFile(join(root, "main.py"), "utf8")).toBe(FILES["main.py"]);
    await pkg.cleanup();
    // The data dir and the store are the owner's only.
    expect((await stat(dataDir)).mode & 0o077).toBe(0);
    expect((await stat(join(dataDir, "packages"))).mode & 0o077).toBe(0);
    // Nothing of the build is left in the work directory.
    expect(await readdir(join(dataDir, "builds", ".work"))).toEqual([]);
  });
});

describe("dependency builds", () => {
  /** A stand-in for npm: waits, then writes node_modules/<marker>/index.js with its own pid. */
  async function fakeNpm(delayMs: number): Promise<string> {
    const path = join(dir, `fake-npm-${delayMs}.sh`);
    await writeFile(
      path,
      `#!/bin/sh\nsleep ${delayMs / 1000}\nmkdir -p node_modules/dep\necho "module.exports = $$;" > node_modules/dep/index.js\n`,
    );
    await chmod(path, 0o755);
    return path;
  }

  async function nodeSource(): Promise<Awaited<ReturnType<typeof readSource>>> {
    const src = join(dir, "src");
    await writeTree(src, {
      "main.mjs": "export const handle = () => 'x';\n",
      "package.json": JSON.stringify({ dependencies: { dep: "1.0.0" } }),
      "package-lock.json": JSON.stringify({ lockfileVersion: 3, packages: {} }),
    });
    return readSource(src, "nodejs", "main.handle");
  }

  it("two builds of one key at once: both succeed, the first to finish stays, nothing is removed under it", async () => {
    const source = await nodeSource();
    const deps = source.dependencies;
    if (deps === undefined) throw new Error("expected dependencies");
    const buildsDir = join(dir, "builds");
    const slow = buildDependencies(source, deps, { buildsDir, target: { ...target, npm: await fakeNpm(600) } });
    const fast = buildDependencies(source, deps, { buildsDir, target: { ...target, npm: await fakeNpm(100) } });
    const first = await fast;
    const winner = await readFile(join(first.dir, "node_modules/dep/index.js"), "utf8");
    const second = await slow;
    expect(second.key).toBe(first.key);
    expect(second.dir).toBe(first.dir);
    // The slower build found the faster one in place and left it alone.
    expect(await readFile(join(first.dir, "node_modules/dep/index.js"), "utf8")).toBe(winner);
    expect((await readdir(buildsDir)).filter((n) => n.includes(".tmp-") || n.includes(".stale-"))).toEqual([]);
    // A third deploy reuses it without running the tool.
    const third = await buildDependencies(source, deps, { buildsDir, target: { ...target, npm: "/nonexistent" } });
    expect(third).toMatchObject({ key: first.key, built: false });
  });

  it("a leftover directory without its dependencies is replaced by the next build", async () => {
    const source = await nodeSource();
    const deps = source.dependencies;
    if (deps === undefined) throw new Error("expected dependencies");
    const buildsDir = join(dir, "builds");
    const good = await buildDependencies(source, deps, { buildsDir, target: { ...target, npm: await fakeNpm(0) } });
    await rm(join(good.dir, "node_modules"), { recursive: true });
    await writeFile(join(good.dir, "half-written"), "");
    const again = await buildDependencies(source, deps, { buildsDir, target: { ...target, npm: await fakeNpm(0) } });
    expect(again.built).toBe(true);
    expect(await readdir(again.dir)).toContain("node_modules");
    expect(await readdir(again.dir)).not.toContain("half-written");
  });

  it("a tool that fails leaves no build behind", async () => {
    const source = await nodeSource();
    const deps = source.dependencies;
    if (deps === undefined) throw new Error("expected dependencies");
    const buildsDir = join(dir, "builds");
    const failing = join(dir, "fail.sh");
    await writeFile(failing, "#!/bin/sh\necho 'npm error code EUSAGE' >&2\nexit 1\n");
    await chmod(failing, 0o755);
    await expect(
      buildDependencies(source, deps, { buildsDir, target: { ...target, npm: failing } }),
    ).rejects.toMatchObject({
      name: "BuildError",
      tail: ["npm error code EUSAGE"],
    });
    expect(await readdir(buildsDir)).toEqual([]);
  });
});

describe("requirements.txt", () => {
  it.each([
    "requests==2.32.4",
    "orjson>=3.10 ; python_version >= '3.11'",
    "--index-url https://pypi.org/simple",
    "# a comment",
    "pydantic[email]==2.11.7  # inline comment",
  ])("accepts %s", (line) => {
    expect(() => checkRequirements(`${line}\n`)).not.toThrow();
  });

  it.each([
    ["-r other.txt", "line 2"],
    ["--requirement=other.txt", "line 2"],
    ["-c constraints.txt", "line 2"],
    ["-e .", "line 2"],
    ["./wheels/pkg-1.0-py3-none-any.whl", "line 2"],
    ["/abs/pkg.tar.gz", "line 2"],
    ["mypkg @ file:///home/me/mypkg", "line 2"],
  ])("refuses %s, naming the line", (line, where) => {
    expect(() => checkRequirements(`requests==2.32.4\n${line}\n`)).toThrow(SourceError);
    expect(() => checkRequirements(`requests==2.32.4\n${line}\n`)).toThrow(where);
  });
});

describe("requirements.txt, any text", () => {
  it("is accepted or refused with a SourceError naming a line, never anything else; plain pins always pass", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 200 }), (text) => {
        try {
          checkRequirements(text);
        } catch (err) {
          expect(err).toBeInstanceOf(SourceError);
          expect((err as Error).message).toMatch(/^requirements\.txt line \d+: /);
        }
      }),
      { numRuns: 2000, seed: 7 },
    );
    const pin = fc
      .tuple(fc.stringMatching(/^[a-z][a-z0-9_-]{0,20}$/), fc.stringMatching(/^[0-9]{1,3}(\.[0-9]{1,3}){0,2}$/))
      .map(([name, version]) => `${name}==${version}`);
    fc.assert(
      fc.property(fc.array(pin, { maxLength: 10 }), (lines) => {
        expect(() => checkRequirements(lines.join("\n"))).not.toThrow();
      }),
      { numRuns: 500, seed: 7 },
    );
  });
});
