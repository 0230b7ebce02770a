/**
 * `faas keys create|list|revoke`: API keys of functions with `spec.auth:
 * apiKey` (ADR 0011). Locally through the gateway's admin API; with
 * --kubeconfig, --context or --namespace straight in the cluster's Secret
 * (that code, and the Kubernetes client, load only then).
 */
import type { ApiKeyInfo, FunctionSummary } from "@faas/gateway";
import { type CommandContext, gatewayClient } from "../context.js";
import { EXIT } from "../exit-codes.js";
import { formatTable } from "../ui.js";

export interface KeysOptions {
  kubeconfig?: string;
  context?: string;
  namespace?: string;
  json?: boolean;
}

/** Where keys live: the local gateway, or a namespace of a cluster. */
export interface KeyPlace {
  /** Creates a key; `auth` is the function's current `spec.auth`. */
  create(fn: string): Promise<{ key: string; info: ApiKeyInfo; auth: string }>;
  list(fn: string | undefined): Promise<ApiKeyInfo[]>;
  revoke(id: string): Promise<boolean>;
}

const onCluster = (o: KeysOptions): boolean =>
  o.kubeconfig !== undefined || o.context !== undefined || o.namespace !== undefined;

async function placeFor(ctx: CommandContext, opts: KeysOptions): Promise<KeyPlace> {
  if (onCluster(opts)) return (await import("./keys-kube.js")).clusterKeys(opts);
  const client = await gatewayClient(ctx.cfg);
  const fnPath = (fn: string) => `/functions/${encodeURIComponent(fn)}`;
  return {
    async create(fn) {
      const { auth } = (await client.admin("GET", fnPath(fn))) as FunctionSummary;
      const { key, ...info } = (await client.admin("POST", `${fnPath(fn)}/keys`)) as ApiKeyInfo & { key: string };
      return { key, info, auth };
    },
    async list(fn) {
      const path = fn === undefined ? "/keys" : `${fnPath(fn)}/keys`;
      return ((await client.admin("GET", path)) as { items: ApiKeyInfo[] }).items;
    },
    async revoke(id) {
      await client.admin("DELETE", `/keys/${encodeURIComponent(id)}`);
      return true;
    },
  };
}

export async function runKeysCreate(ctx: CommandContext, fn: string, opts: KeysOptions): Promise<number> {
  const { ui } = ctx;
  const { key, info, auth } = await (await placeFor(ctx, opts)).create(fn);
  if (opts.json) {
    ui.out(JSON.stringify({ ...info, key }));
    return EXIT.OK;
  }
  // The key alone on stdout (KEY=$(faas keys create f)); everything else on stderr.
  ui.out(key);
  ui.note(
    ui.ce.dim(
      `API key ${info.id} for ${fn}: shown this once, only its hash is kept; \`faas keys revoke ${info.id}\` revokes it`,
    ),
  );
  if (auth !== "apiKey") {
    ui.note(ui.ce.yellow(`note: ${fn} has spec.auth: ${auth}; keys are checked only with spec.auth: apiKey`));
  }
  return EXIT.OK;
}

export async function runKeysList(ctx: CommandContext, fn: string | undefined, opts: KeysOptions): Promise<number> {
  const { ui } = ctx;
  const items = await (await placeFor(ctx, opts)).list(fn);
  if (opts.json) {
    ui.out(JSON.stringify(items, null, 2));
    return EXIT.OK;
  }
  if (items.length === 0) {
    ui.out(
      ui.c.dim(`no API keys${fn === undefined ? "" : ` for ${fn}`}; create one with \`faas keys create FUNCTION\``),
    );
    return EXIT.OK;
  }
  const rows = items.map((k) => [k.id, ui.c.bold(k.function), k.createdAt]);
  ui.out(formatTable(["ID", "FUNCTION", "CREATED"], rows, ui.c));
  return EXIT.OK;
}

export async function runKeysRevoke(ctx: CommandContext, id: string, opts: KeysOptions): Promise<number> {
  const { ui } = ctx;
  if (!(await (await placeFor(ctx, opts)).revoke(id))) {
    ui.note(ui.ce.red(`no API key with id ${id}`));
    return EXIT.FAILED;
  }
  ui.out(opts.json ? JSON.stringify({ revoked: id }) : `${ui.c.green("revoked")} ${id}`);
  return EXIT.OK;
}
