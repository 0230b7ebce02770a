/**
 * The build step of `faas deploy` for a directory, with progress on stderr and
 * the errors users can act on: a source problem, or pip's / npm's own output
 * when the dependencies do not install (exit 2; nothing was deployed, so the
 * version already deployed keeps serving).
 */
import { type FunctionResource, type ManifestEntry, type PackageRef, parseFunction } from "@faas/api";
import type { CommandContext } from "../context.js";
import { CliError, EXIT } from "../exit-codes.js";
import { type BuiltPackage, buildPackage } from "./build.js";
import { BuildError } from "./deps.js";
import type { BuildTarget } from "./runtime.js";
import { SourceError } from "./source.js";

export interface DeployBuildOptions {
  quiet: boolean;
  target: BuildTarget;
}

/** Builds the entry's directory, hands the package to `deliver`, and returns the Function naming it. */
export async function buildForDeploy(
  ctx: CommandContext,
  entry: ManifestEntry,
  opts: DeployBuildOptions,
  deliver: (pkg: BuiltPackage, progress: (message: string) => void) => Promise<PackageRef>,
): Promise<FunctionResource> {
  const { ui } = ctx;
  const fn = entry.resource;
  const name = fn.metadata.name;
  const dir = entry.codeDir as string;
  const spinner = ui.spinner(`building ${name} from ${dir}…`, { quiet: opts.quiet });
  const progress = (message: string): void => {
    spinner.update(`building ${name}: ${message}`);
    // Without a terminal to animate, each step is a line of its own.
    if (!ui.canAnimate && !opts.quiet) ui.note(ui.ce.dim(`${name}: ${message}`));
  };
  const started = performance.now();
  let pkg: BuiltPackage | undefined;
  try {
    pkg = await buildPackage(
      { dir, runtime: fn.spec.runtime, handler: fn.spec.handler },
      { dataDir: ctx.cfg.dataDir, target: opts.target, onProgress: progress },
    );
    const ref = await deliver(pkg, progress);
    spinner.stop();
    if (!opts.quiet) {
      const deps =
        pkg.deps === undefined
          ? "no dependencies"
          : pkg.deps.built
            ? `dependencies installed in ${(pkg.deps.ms / 1000).toFixed(1)} s`
            : "dependencies unchanged, cached build";
      ui.note(
        ui.ce.dim(
          `${name}: package ${ref.digest.slice(0, 19)}… (${pkg.source.files.length} files; ${deps}) in ${((performance.now() - started) / 1000).toFixed(1)} s`,
        ),
      );
    }
    return parseFunction({ ...fn, spec: { ...fn.spec, package: ref } }, `${name} (built from ${dir})`);
  } catch (err) {
    spinner.stop();
    if (err instanceof BuildError) {
      for (const line of err.tail) ui.note(`  ${line}`);
      throw new CliError(
        EXIT.USAGE,
        `deploy ${name}: ${err.message} (its last lines are above)`,
        "nothing was deployed: the versions already deployed keep serving",
        { cause: err },
      );
    }
    if (err instanceof SourceError) {
      throw new CliError(EXIT.USAGE, `deploy ${name}: ${dir}: ${err.message}`, undefined, { cause: err });
    }
    throw err;
  } finally {
    await pkg?.cleanup();
  }
}
