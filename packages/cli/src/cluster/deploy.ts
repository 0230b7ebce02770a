/**
 * `faas deploy` on a cluster: server-side apply of each Function, then wait,
 * with progress on stderr, until its status says it is ready (exit 0) or names
 * a problem (exit 2 with the operator's message, e.g. code that crashes on load).
 */
import type { FunctionResource } from "@faas/api";
import { RESOURCES } from "@faas/kube";
import { type ClusterTarget, connectCluster } from "../cluster-context.js";
import type { DeployOptions, DeployResult } from "../commands/deploy.js";
import type { CommandContext } from "../context.js";
import { CliError, EXIT } from "../exit-codes.js";
import { CLI_FIELD_MANAGER, type ClusterFunction, functionObject, readiness } from "./function-object.js";
import { kubeFailure } from "./kube-errors.js";

const POLL_MS = 500;
export const DEFAULT_WAIT_SECONDS = 180;

export async function deployToCluster(
  ctx: CommandContext,
  target: ClusterTarget,
  functions: readonly FunctionResource[],
  opts: DeployOptions,
): Promise<number> {
  const { ui } = ctx;
  const conn = await connectCluster(target);
  const results: DeployResult[] = [];
  for (const fn of functions) {
    const name = fn.metadata.name;
    const ref = { ...RESOURCES.functions, namespace: conn.namespace, name };
    let applied: ClusterFunction;
    let created: boolean;
    try {
      created = (await conn.kube.find<ClusterFunction>(ref)) === undefined;
      applied = await conn.kube.apply<ClusterFunction>(ref, functionObject(fn, conn.namespace), CLI_FIELD_MANAGER);
    } catch (err) {
      throw kubeFailure(err, `deploy ${name}`, conn.where);
    }
    const spinner = ui.spinner(`deploying ${name} (${conn.where})…`, { quiet: opts.json });
    let last = "";
    const progress = (message: string): void => {
      if (message === last) return;
      last = message;
      spinner.update(`deploying ${name}: ${message}`);
      if (!ui.canAnimate && !opts.json) ui.note(ui.ce.dim(`${name}: ${message}`));
    };
    const deadline = Date.now() + (opts.wait ?? DEFAULT_WAIT_SECONDS) * 1000;
    let current = applied;
    try {
      for (;;) {
        const r = readiness(current);
        if (r.state === "ready") break;
        if (r.state === "failed") {
          throw new CliError(
            EXIT.USAGE,
            `deploy ${name}: ${r.reason}: ${r.message}`,
            `\`faas logs ${name}${target.context ? ` --context ${target.context}` : ""}\` shows what the runner printed`,
          );
        }
        progress(r.message);
        if (Date.now() > deadline) {
          throw new CliError(
            EXIT.FAILED,
            `deploy ${name}: not ready after ${opts.wait ?? DEFAULT_WAIT_SECONDS} s: ${r.message}`,
            "is the operator running? (faas operator, or deploy/operator.yaml)",
          );
        }
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
        try {
          current = await conn.kube.get<ClusterFunction>(ref);
        } catch (err) {
          throw kubeFailure(err, `deploy ${name}`, conn.where);
        }
      }
    } finally {
      spinner.stop();
    }
    const result = { name, created, url: current.status?.url ?? "" };
    results.push(result);
    if (!opts.json) ui.out(`${ui.c.green(created ? "created" : "updated")} ${ui.c.bold(name)}  ${result.url}`);
  }
  if (opts.json) ui.out(JSON.stringify(results, null, 2));
  return EXIT.OK;
}
