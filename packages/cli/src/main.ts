#!/usr/bin/env node
/** The `faas` binary: config from the environment, then the command line. */
import { CommanderError } from "commander";
import { loadCliConfig } from "./config.js";
import type { CommandContext } from "./context.js";
import { EXIT, toCliError } from "./exit-codes.js";
import { cliVersion } from "./paths.js";
import { buildProgram } from "./program.js";
import { createUi } from "./ui.js";

const cfg = loadCliConfig(process.env);
const ctx: CommandContext = { cfg, ui: createUi(cfg) };

// `faas list | head` closes stdout early: that is not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(process.exitCode ?? EXIT.OK);
    throw err;
  });
}

const interrupt = (): void => (ctx.onInterrupt ? ctx.onInterrupt() : process.exit(EXIT.INTERRUPTED));
process.on("SIGINT", interrupt);
process.on("SIGTERM", interrupt);

let exitCode: number = EXIT.OK;
const program = buildProgram(ctx, cliVersion(), async (run) => {
  exitCode = await run;
});

try {
  await program.parseAsync(process.argv);
  process.exitCode = exitCode;
} catch (err) {
  if (err instanceof CommanderError) {
    const shownOnRequest = err.code === "commander.helpDisplayed" || err.code === "commander.version";
    process.exitCode = shownOnRequest ? EXIT.OK : EXIT.USAGE;
  } else {
    const e = toCliError(err);
    ctx.ui.error(e);
    process.exitCode = e.exitCode;
  }
}
