/** Package builds (docs/packages.md), for tools beside the CLI (the benchmarks). */
export { type Artifact, assemble, sha256 } from "./artifact.js";
export { type BuiltPackage, buildPackage, buildsDir, installLocal, packagesDir } from "./build.js";
export { BuildError, treeBytes } from "./deps.js";
export type { BuildTarget } from "./runtime.js";
