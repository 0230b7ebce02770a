/** Files the CLI finds relative to its own package. */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The repository's example functions, served by `faas up` when no -f is given. */
export const EXAMPLES_DIR = fileURLToPath(new URL("../../../examples", import.meta.url));

export function cliVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version?: string };
  return pkg.version ?? "0.0.0";
}
