/**
 * `faas delete` on a cluster: deletes the Function object and waits until it
 * is gone; owner references take its Deployment, Service, ConfigMaps and HPA
 * with it, and its pods drain (preStop, grace period) as in any scale-down.
 * Its API keys go too, as in local mode: their entries in the namespace's
 * Secret `faas-api-keys` (bound to the deleted Function's uid, they would open
 * nothing any more; a Function made again under the name starts with none).
 */
import { type KubeObject, RESOURCES, removeFunctionApiKeys } from "@faas/kube";
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
  let uid: string | undefined;
  try {
    uid = (await conn.kube.find<KubeObject>(ref))?.metadata.uid;
    if (uid === undefined || !(await conn.kube.delete(ref))) {
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
  let keysRemoved: number | undefined;
  try {
    keysRemoved = await removeFunctionApiKeys(conn.kube, conn.namespace, name, uid);
  } catch (err) {
    // The Function is gone either way; its keys are inert, and `faas keys revoke` can remove them later.
    if (!opts.json)
      ui.note(
        ui.ce.yellow(
          `${name}'s API keys stay in the Secret faas-api-keys (they open nothing now): ${(err as Error).message}; \`faas keys list\` and \`faas keys revoke <id>\` remove them`,
        ),
      );
  }
  if (opts.json) ui.out(JSON.stringify({ deleted: name, apiKeysRemoved: keysRemoved ?? null }));
  else {
    const keys = keysRemoved ? ` and its ${keysRemoved} API key${keysRemoved === 1 ? "" : "s"}` : "";
    ui.out(`${ui.c.green("deleted")} ${ui.c.bold(name)}${keys}`);
  }
  return EXIT.OK;
}
