// Prints, one a line and relative to the repository root, the files and
// directories a workspace package needs at run time: its package.json and
// dist/, the same for the workspace packages it depends on, the symlinks
// node_modules/@faas/* that point at them, and every production dependency
// in node_modules (resolved the way Node resolves them). The Dockerfiles get
// the same set with `npm prune --omit=dev`.
// Usage: node node-closure.mjs <repo root> <workspace dir, e.g. packages/gateway>
import { existsSync, lstatSync, readFileSync, realpathSync } from "node:fs";
import { dirname, join, relative } from "node:path";

const [root, start] = process.argv.slice(2);
const out = new Set();
const seen = new Set();

function findDep(fromDir, name) {
  for (let dir = fromDir; ; dir = dirname(dir)) {
    const candidate = join(dir, "node_modules", name);
    if (existsSync(join(candidate, "package.json"))) return candidate;
    if (dir === root || dir === dirname(dir)) return undefined;
  }
}

function visit(pkgDir) {
  const real = realpathSync(pkgDir);
  if (seen.has(real)) return;
  seen.add(real);
  const pkg = JSON.parse(readFileSync(join(real, "package.json"), "utf8"));
  const rel = relative(root, real);
  if (rel.startsWith("packages/")) {
    out.add(join(rel, "package.json"));
    if (existsSync(join(real, "dist"))) out.add(join(rel, "dist"));
  } else {
    out.add(rel);
  }
  const deps = { ...pkg.dependencies, ...pkg.optionalDependencies };
  for (const name of Object.keys(deps)) {
    const dep = findDep(real, name);
    if (dep === undefined) {
      if (pkg.optionalDependencies?.[name] === undefined)
        throw new Error(`${rel}: dependency ${name} is not installed`);
      continue;
    }
    if (lstatSync(dep).isSymbolicLink()) out.add(relative(root, dep));
    visit(dep);
  }
}

visit(join(root, start));
// A dependency nested inside another one's directory is already included.
const sorted = [...out].sort();
for (const p of sorted) {
  if (!sorted.some((q) => q !== p && p.startsWith(`${q}/`))) console.log(p);
}
