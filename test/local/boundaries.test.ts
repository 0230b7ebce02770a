/**
 * ADR 0001 as a test over the import graph: which workspace may import which,
 * that every import of another workspace is a declared dependency, that the
 * gateway and local mode never reach Kubernetes code, and that `faas list`
 * does not load `@kubernetes/client-node` when it runs.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI_MAIN, ROOT } from "../support/cli.js";

const KUBE_CLIENT = "@kubernetes/client-node";

/** Who may import whom (ADR 0001). Runners depend on nothing of ours. */
const ALLOWED: Record<string, readonly string[]> = {
  api: [],
  "runner-node": [],
  gateway: ["api"],
  kube: ["api", KUBE_CLIENT],
  local: ["api", "gateway", "runner-node"],
  "kube-backend": ["api", "gateway", "kube"],
  operator: ["api", "kube", KUBE_CLIENT],
  cli: ["api", "gateway", "local", "kube", "operator"],
};

interface Import {
  from: string;
  specifier: string;
  /** `import type`: erased at build, no run-time edge. */
  typeOnly: boolean;
  dynamic: boolean;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(path);
    return e.name.endsWith(".ts") && !e.name.endsWith(".test.ts") ? [path] : [];
  });
}

function importsOf(file: string): Import[] {
  const text = readFileSync(file, "utf8");
  const out: Import[] = [];
  for (const m of text.matchAll(/^(import|export)\s+(type\s+)?[^;]*?from\s+"([^"]+)"/gms)) {
    out.push({ from: file, specifier: m[3] as string, typeOnly: m[2] !== undefined, dynamic: false });
  }
  for (const m of text.matchAll(/^import\s+"([^"]+)"/gm)) {
    out.push({ from: file, specifier: m[1] as string, typeOnly: false, dynamic: false });
  }
  for (const m of text.matchAll(/\bimport\(\s*"([^"]+)"\s*\)/g)) {
    out.push({ from: file, specifier: m[1] as string, typeOnly: false, dynamic: true });
  }
  return out;
}

/** `@faas/gateway/x` → `gateway`; other packages by their npm name; relative and node: → undefined. */
function target(specifier: string): string | undefined {
  if (specifier.startsWith(".") || specifier.startsWith("node:")) return undefined;
  if (specifier.startsWith("@faas/")) return specifier.slice(6).split("/")[0];
  const parts = specifier.split("/");
  return specifier.startsWith("@") ? `${parts[0]}/${parts[1]}` : parts[0];
}

const PACKAGES = Object.keys(ALLOWED);
const graph = new Map(PACKAGES.map((p) => [p, sourceFiles(join(ROOT, "packages", p, "src")).flatMap(importsOf)]));

describe("ADR 0001: workspace boundaries", () => {
  it("every workspace of the repository is in the table", () => {
    const workspaces = (
      JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { workspaces: string[] }
    ).workspaces.map((w) => w.replace("packages/", ""));
    expect([...workspaces].sort()).toEqual([...PACKAGES].sort());
  });

  it.each(PACKAGES)("%s imports only the workspaces (and Kubernetes client) it is allowed to", (pkg) => {
    const ours = new Set([...PACKAGES, KUBE_CLIENT]);
    const wrong = (graph.get(pkg) ?? [])
      .filter((i) => !i.typeOnly)
      .map((i) => ({ ...i, to: target(i.specifier) }))
      .filter((i) => i.to !== undefined && ours.has(i.to) && i.to !== pkg && !ALLOWED[pkg]?.includes(i.to))
      .map((i) => `${i.from.slice(ROOT.length)} → ${i.specifier}`);
    expect(wrong).toEqual([]);
  });

  it.each(PACKAGES)("%s declares every package it imports at run time", (pkg) => {
    const manifest = JSON.parse(readFileSync(join(ROOT, "packages", pkg, "package.json"), "utf8")) as {
      dependencies?: Record<string, string>;
    };
    const declared = new Set(Object.keys(manifest.dependencies ?? {}));
    const missing = new Set<string>();
    for (const i of graph.get(pkg) ?? []) {
      const to = target(i.specifier);
      if (i.typeOnly || to === undefined || to === pkg) continue;
      const name = PACKAGES.includes(to) ? `@faas/${to}` : to;
      if (!declared.has(name)) missing.add(`${name} (${i.from.slice(ROOT.length)})`);
    }
    expect([...missing]).toEqual([]);
  });

  it("local mode declares the runners it starts", () => {
    const manifest = JSON.parse(readFileSync(join(ROOT, "packages/local/package.json"), "utf8")) as {
      dependencies: Record<string, string>;
    };
    expect(manifest.dependencies["@faas/runner-node"]).toBeDefined();
    // The Python runner is not an npm package; local mode finds it beside itself.
    expect(existsSync(join(ROOT, "packages/runner-python/faas_runner/__main__.py"))).toBe(true);
  });

  /** Static (loaded at start) imports from `entry`, following our own files and workspaces. */
  function staticClosure(entry: string): Set<string> {
    const seen = new Set<string>();
    const external = new Set<string>();
    const queue = [entry];
    while (queue.length > 0) {
      const file = queue.pop() as string;
      if (seen.has(file)) continue;
      seen.add(file);
      for (const i of importsOf(file)) {
        if (i.typeOnly || i.dynamic) continue;
        const to = target(i.specifier);
        if (i.specifier.startsWith(".")) queue.push(resolve(dirname(file), i.specifier.replace(/\.js$/, ".ts")));
        else if (to !== undefined && PACKAGES.includes(to)) {
          external.add(`@faas/${to}`);
          queue.push(join(ROOT, "packages", to, "src", "index.ts"));
        } else if (to !== undefined) external.add(to);
      }
    }
    return external;
  }

  it.each([
    ["the CLI's start (every local command)", "packages/cli/src/main.ts", ["commander", "@faas/api"]],
    ["the gateway", "packages/gateway/src/index.ts", ["@faas/api", "prom-client"]],
    ["local mode", "packages/local/src/index.ts", ["@faas/gateway", "@faas/api"]],
  ])("%s never statically reaches Kubernetes code", (_, entry, mustReach) => {
    const reached = staticClosure(join(ROOT, entry));
    for (const m of mustReach) expect(reached.has(m), `the walk from ${entry} reaches ${m}`).toBe(true);
    for (const forbidden of [KUBE_CLIENT, "@faas/kube", "@faas/kube-backend", "@faas/operator"]) {
      expect(reached.has(forbidden), `${entry} reaches ${forbidden}`).toBe(false);
    }
  });
});

describe("local commands at run time", () => {
  let dir: string;
  beforeAll(() => {
    execFileSync("npx", ["tsc", "-b", "packages/cli"], { cwd: ROOT, stdio: "inherit" });
    dir = mkdtempSync(join(tmpdir(), "faas-boundary-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Runs the CLI with a module-resolution hook that records every module URL it loads. */
  function loadedModules(args: string[]): { urls: string[]; status: number | null } {
    const log = join(dir, `loaded-${args.length}-${args[0]?.length}.txt`);
    const hooks = join(dir, "hooks.mjs");
    writeFileSync(
      hooks,
      `import { appendFileSync } from "node:fs";
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  appendFileSync(${JSON.stringify(log)}, r.url + "\\n");
  return r;
}`,
    );
    const register = join(dir, "register.mjs");
    writeFileSync(
      register,
      `import { register } from "node:module";\nregister(${JSON.stringify(pathToFileURL(hooks).href)});\n`,
    );
    const run = spawnSync(process.execPath, ["--import", pathToFileURL(register).href, ...args], {
      env: { PATH: process.env.PATH, HOME: dir, FAAS_DATA_DIR: join(dir, "data"), NO_COLOR: "1" },
      encoding: "utf8",
    });
    return { urls: existsSync(log) ? readFileSync(log, "utf8").trim().split("\n") : [], status: run.status };
  }

  it.each([
    [["list"], "/cli/dist/commands/list.js"],
    [["keys", "list"], "/cli/dist/commands/keys.js"],
    [["keys", "revoke", "0123456789abcdef"], "/cli/dist/commands/keys.js"],
  ])("faas %j does not load @kubernetes/client-node (nor the operator)", (args, command) => {
    const { urls, status } = loadedModules([CLI_MAIN, ...args]);
    // No gateway runs in this data directory: exit 3 after the command itself was loaded.
    expect(status).toBe(3);
    expect(urls.some((u) => u.endsWith(command))).toBe(true);
    expect(
      urls.filter((u) => u.includes("client-node") || u.includes("/operator/dist/") || u.includes("/kube/dist/")),
    ).toEqual([]);
  });

  it("the same hook does record the Kubernetes client when the operator is loaded", () => {
    const { urls, status } = loadedModules(["--input-type=module", "-e", 'await import("@faas/operator");']);
    expect(status).toBe(0);
    expect(urls.some((u) => u.includes("client-node"))).toBe(true);
  });
});
