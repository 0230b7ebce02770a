/**
 * `faas keys … --kubeconfig/--context/--namespace`: API keys written straight
 * into the namespace's Secret `faas-api-keys` with the user's own credentials
 * (the gateways only read it). Loaded only for these commands: it brings the
 * Kubernetes client.
 */
import { FaasError, FUNCTION_KIND, newApiKey } from "@faas/api";
import { KubeClient, KubeError, type KubeObject, RESOURCES, readApiKeys, revokeApiKey, storeApiKey } from "@faas/kube";
import { CliError, EXIT } from "../exit-codes.js";
import type { KeyPlace, KeysOptions } from "./keys.js";

export function clusterKeys(opts: KeysOptions): KeyPlace {
  let client: KubeClient;
  try {
    client = KubeClient.load({ kubeconfig: opts.kubeconfig, context: opts.context });
  } catch (err) {
    throw new CliError(EXIT.USAGE, `cannot use the kubeconfig: ${(err as Error).message}`, undefined, { cause: err });
  }
  const namespace = opts.namespace ?? client.namespace;
  const api = async <T>(what: string, call: () => Promise<T>): Promise<T> => {
    try {
      return await call();
    } catch (err) {
      if (err instanceof CliError || err instanceof FaasError) throw err;
      const status = err instanceof KubeError ? ` (HTTP ${err.status})` : "";
      throw new CliError(
        err instanceof KubeError ? EXIT.FAILED : EXIT.UNAVAILABLE,
        `cannot ${what} in namespace ${namespace}${status}: ${(err as Error).message}`,
        "check that kubectl works with the same kubeconfig and context",
        { cause: err },
      );
    }
  };
  return {
    create: (fn) =>
      api("create an API key", async () => {
        const obj = await client.find<KubeObject & { spec?: { auth?: string } }>({
          ...RESOURCES.functions,
          namespace,
          name: fn,
        });
        if (obj === undefined) {
          throw new CliError(
            EXIT.NOT_FOUND,
            `no ${FUNCTION_KIND} named "${fn}" in namespace ${namespace}`,
            "`kubectl get functions -A` lists them",
          );
        }
        const { key, record } = newApiKey(fn, { functionUid: obj.metadata.uid });
        await storeApiKey(client, namespace, record);
        return {
          key,
          info: { id: record.id, function: fn, createdAt: record.createdAt },
          auth: obj.spec?.auth ?? "none",
        };
      }),
    list: (fn) =>
      api("read API keys", async () =>
        (await readApiKeys(client, namespace))
          .filter((r) => fn === undefined || r.function === fn)
          .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id))
          .map(({ id, function: f, createdAt }) => ({ id, function: f, createdAt })),
      ),
    revoke: (id) => api("revoke an API key", () => revokeApiKey(client, namespace, id)),
  };
}
