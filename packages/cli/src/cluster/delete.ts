/**
 * `faas delete` on a cluster: deletes the Function object and waits until it
 * is gone; owner references take its Deployment, Service, ConfigMaps and HPA
 * with it, and its pods drain (preStop, grace period) as in any scale-down.
 */
import { RESOURCES } from "@faas/kube";
import { type ClusterTarget, connectCluster } from "../cluster-context.js";
import type { CommandContext } from "../context.js";
import { CliError, EXIT } from "../exit-codes.js";
import { kubeFailure } from "./kube-errors.js";

const GONE_TIMEOUT_MS = 60_000;

export async function deleteOnCluster(
  ctx: CommandContext,
  target: ClusterTarget,
  name: string,
  opts: { json?: boolean },
): Promise<number> {
  const { ui } = ctx;
  const conn = await connectCluster(target);
  const ref = { ...RESOURCES.functions, namespace: conn.namespace, name };
  const spinner = ui.spinner(`deleting ${name} (${conn.where})…`, { quiet: opts.json });
  try {
    if (!(await conn.kube.delete(ref))) {
      throw new CliError(
        EXIT.NOT_FOUND,
        `no function named "${name}" (${conn.where})`,
        "`faas list` shows the deployed functions",
      );
    }
    const deadline = Date.now() + GONE_TIMEOUT_MS;
    while ((await conn.kube.find(ref)) !== undefined) {
      if (Date.now() > deadline)
        throw new CliError(EXIT.FAILED, `delete ${name}: still there after ${GONE_TIMEOUT_MS / 1000} s`);
      await new Promise((r) => setTimeout(r, 250));
    }
  } catch (err) {
    throw kubeFailure(err, `delete ${name}`, conn.where);
  } finally {
    spinner.stop();
  }
  ui.out(opts.json ? JSON.stringify({ deleted: name }) : `${ui.c.green("deleted")} ${ui.c.bold(name)}`);
  return EXIT.OK;
}
