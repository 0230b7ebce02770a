/**
 * `faas up`: the gateway and the local backend in the foreground. Ctrl-C (or
 * SIGTERM) drains in-flight requests and stops every runner; a second Ctrl-C
 * kills them and exits at once.
 */
import { createWriteStream, type WriteStream } from "node:fs";
import { mkdir } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { FaasError, type FunctionResource, loadManifestEntries, type ManifestEntry } from "@faas/api";
import { createLogger } from "@faas/gateway";
import { type LocalPlatform, startLocalPlatform } from "@faas/local";
import type { CommandContext } from "../context.js";
import { CliError, EXIT } from "../exit-codes.js";
import { isProcessAlive, readGatewayState } from "../gateway-client.js";
import { EXAMPLES_DIR } from "../paths.js";
import { killChildProcesses } from "../processes.js";

export interface UpOptions {
  file: string[];
  port?: number;
  host?: string;
  poolSize: number;
  examples: boolean;
  logLevel?: string;
  verbose?: boolean;
}

const TICK_MS = 500;
const SCALE_IN_DELAY_MS = 30_000;

export async function runUp(ctx: CommandContext, opts: UpOptions): Promise<number> {
  const { cfg, ui } = ctx;
  const entries = await loadFunctions(opts.file.length > 0 ? opts.file : opts.examples ? [EXAMPLES_DIR] : []);
  await refuseSecondGateway(cfg.dataDir);
  // Directories (spec.codeFile: DIR) are built into the data dir first, as `faas deploy` does.
  const functions: FunctionResource[] = [];
  for (const entry of entries) {
    if (entry.codeDir === undefined) functions.push(entry.resource);
    else {
      const [{ buildForDeploy }, { installLocal }] = await Promise.all([
        import("../package/deploy-build.js"),
        import("../package/build.js"),
      ]);
      const target = { kind: "local", python: cfg.python, npm: cfg.npm } as const;
      functions.push(
        await buildForDeploy(ctx, entry, { quiet: false, target }, async (pkg) => {
          await installLocal(cfg.dataDir, pkg);
          return { digest: pkg.artifact.digest };
        }),
      );
    }
  }
  const gatewayCfg = { ...cfg.gateway, port: opts.port ?? cfg.gateway.port, host: opts.host ?? cfg.gateway.host };
  await checkPortFree(gatewayCfg.host, gatewayCfg.port);

  await mkdir(cfg.dataDir, { recursive: true, mode: 0o700 });
  const logPath = join(cfg.dataDir, "gateway.log");
  const toStderr = opts.logLevel !== undefined || opts.verbose === true;
  const logFile: WriteStream | undefined = toStderr
    ? undefined
    : createWriteStream(logPath, { flags: "a", mode: 0o600 });
  const log = createLogger(opts.logLevel ?? (opts.verbose ? "debug" : cfg.gateway.logLevel), "faas", logFile);

  const spinner = ui.spinner(`starting the gateway and warming ${opts.poolSize} runner(s) per runtime…`);
  let platform: LocalPlatform;
  try {
    platform = await startLocalPlatform({
      gateway: gatewayCfg,
      backend: {
        dataDir: cfg.dataDir,
        poolSize: opts.poolSize,
        python: cfg.python,
        node: cfg.node,
        baseEnv: cfg.runnerBaseEnv,
        tickMs: TICK_MS,
        scaleInDelayMs: SCALE_IN_DELAY_MS,
        loadTimeoutMs: cfg.loadTimeoutMs,
      },
      functions,
      log,
    });
  } catch (err) {
    spinner.fail("could not start");
    await closeStream(logFile);
    throw startError(err, gatewayCfg.host, gatewayCfg.port, toStderr ? undefined : logPath);
  }
  spinner.succeed(`gateway listening on ${platform.url}`);
  printBanner(ctx, platform, toStderr ? undefined : logPath);
  return waitForStop(ctx, platform, logFile);
}

async function loadFunctions(paths: readonly string[]): Promise<ManifestEntry[]> {
  const byName = new Map<string, { fn: ManifestEntry; from: string }>();
  for (const path of paths) {
    for (const entry of await loadManifestEntries(path)) {
      const fn = entry.resource;
      const seen = byName.get(fn.metadata.name);
      if (seen !== undefined) {
        throw new CliError(EXIT.USAGE, `function "${fn.metadata.name}" is defined twice (${seen.from} and ${path})`);
      }
      byName.set(fn.metadata.name, { fn: entry, from: path });
    }
  }
  return [...byName.values()].map((v) => v.fn);
}

async function refuseSecondGateway(dataDir: string): Promise<void> {
  const state = await readGatewayState(dataDir);
  if (state === undefined || state.pid === process.pid || !isProcessAlive(state.pid)) return;
  throw new CliError(
    EXIT.UNAVAILABLE,
    `a gateway for ${dataDir} is already running at ${state.url} (pid ${state.pid})`,
    "use it (`faas list`), stop it with Ctrl-C in its terminal, or start another with --data-dir DIR --port N",
  );
}

/** Fails before any runner is spawned when the port is taken. */
async function checkPortFree(host: string, port: number): Promise<void> {
  if (port === 0) return;
  await new Promise<void>((resolve, reject) => {
    const probe = createServer();
    probe.once("error", (err) => reject(startError(err, host, port, undefined)));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve()));
  });
}

function startError(err: unknown, host: string, port: number, logPath: string | undefined): CliError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "EADDRINUSE") {
    return new CliError(
      EXIT.UNAVAILABLE,
      `port ${port} on ${host} is already in use`,
      "another `faas up` may be running (try `faas list`); stop it, or pick a free port with --port N",
    );
  }
  if (code === "EACCES" || code === "EADDRNOTAVAIL") {
    return new CliError(
      EXIT.UNAVAILABLE,
      `cannot listen on ${host}:${port} (${code})`,
      "pick another --host or --port",
    );
  }
  if (err instanceof CliError) return err;
  const exitCode = err instanceof FaasError && err.code === "INVALID_SPEC" ? EXIT.USAGE : EXIT.FAILED;
  const message = err instanceof Error ? err.message : String(err);
  return new CliError(exitCode, message, logPath ? `details in ${logPath}` : undefined, { cause: err });
}

function printBanner(ctx: CommandContext, platform: LocalPlatform, logPath: string | undefined): void {
  const { ui, cfg } = ctx;
  const { c } = ui;
  const fns = platform.backend.listFunctions().sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  const width = Math.max(0, ...fns.map((f) => f.metadata.name.length));
  ui.out("");
  if (fns.length === 0) ui.out(`  no functions yet — deploy one with ${c.cyan("faas deploy -f FILE")}`);
  for (const fn of fns) {
    const name = fn.metadata.name;
    ui.out(`  ${c.bold(name.padEnd(width))}  ${c.dim(fn.spec.runtime.padEnd(6))}  ${platform.url}/invoke/${name}`);
  }
  ui.out("");
  const first = (fns.find((f) => f.metadata.name === "hello") ?? fns[0])?.metadata.name;
  if (first !== undefined) ui.out(`  try   ${c.cyan(`curl ${platform.url}/invoke/${first}`)}`);
  ui.out(`        ${c.cyan("faas list")}${c.dim("   (in another terminal)")}`);
  ui.out(c.dim(`  data  ${cfg.dataDir}${logPath ? `   logs ${logPath}` : ""}`));
  ui.out(c.dim("  Ctrl-C stops (in-flight requests finish)"));
}

function waitForStop(ctx: CommandContext, platform: LocalPlatform, logFile: WriteStream | undefined): Promise<number> {
  const { ui } = ctx;
  return new Promise<number>((resolve) => {
    let stopping = false;
    ctx.onInterrupt = () => {
      if (stopping) {
        ui.note(ui.ce.yellow("forced stop: killing runners"));
        killChildProcesses();
        process.exit(EXIT.INTERRUPTED);
      }
      stopping = true;
      const spinner = ui.spinner("stopping: letting in-flight requests finish (Ctrl-C again to force)…");
      if (!ui.canAnimate) ui.note("stopping: letting in-flight requests finish");
      platform.stop().then(
        async () => {
          spinner.succeed("stopped");
          if (!ui.canAnimate) ui.note("stopped");
          await closeStream(logFile);
          resolve(EXIT.OK);
        },
        async (err: unknown) => {
          spinner.fail(`stop failed: ${err instanceof Error ? err.message : String(err)}`);
          killChildProcesses();
          await closeStream(logFile);
          resolve(EXIT.FAILED);
        },
      );
    };
  });
}

function closeStream(stream: WriteStream | undefined): Promise<void> {
  if (stream === undefined) return Promise.resolve();
  return new Promise((resolve) => stream.end(() => resolve()));
}
