/**
 * `faas operator`: the Kubernetes operator in the foreground, against
 * ~/.kube/config (or $KUBECONFIG), like the walkthrough runs it.
 */
import { loadConfig, runOperator } from "@faas/operator";
import { pino } from "pino";
import type { CommandContext } from "../context.js";
import { CliError, EXIT } from "../exit-codes.js";

export interface OperatorOptions {
  namespace?: string;
  allNamespaces?: boolean;
  leaderElect?: boolean;
  kubeconfig?: string;
  logLevel: string;
}

export async function runOperatorCommand(ctx: CommandContext, opts: OperatorOptions): Promise<number> {
  const flags: string[] = [];
  if (opts.namespace !== undefined) flags.push("--namespace", opts.namespace);
  if (opts.allNamespaces) flags.push("--all-namespaces");
  if (opts.leaderElect) flags.push("--leader-elect");
  if (opts.kubeconfig !== undefined) flags.push("--kubeconfig", opts.kubeconfig);
  flags.push("--log-level", opts.logLevel);
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig({ ...ctx.cfg.operatorEnv }, flags);
  } catch (err) {
    throw new CliError(EXIT.USAGE, (err as Error).message);
  }
  const abort = new AbortController();
  const previous = ctx.onInterrupt;
  ctx.onInterrupt = () => abort.abort();
  ctx.ui.note(
    ctx.ui.ce.dim(
      `faas operator: watching ${config.namespace ? `namespace ${config.namespace}` : "all namespaces"}; Ctrl-C stops`,
    ),
  );
  try {
    await runOperator(config, pino({ name: "faas-operator", level: config.logLevel }, ctx.ui.stderr), abort.signal);
  } catch (err) {
    throw new CliError(
      EXIT.UNAVAILABLE,
      `operator failed: ${(err as Error).message}`,
      "check that kubectl works with the same kubeconfig and that crd.yaml is applied",
    );
  } finally {
    ctx.onInterrupt = previous;
  }
  return abort.signal.aborted ? EXIT.OK : EXIT.FAILED;
}
