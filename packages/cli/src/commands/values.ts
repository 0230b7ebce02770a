/**
 * `faas secret set|list|delete` and `faas config set|list|delete`: the values
 * functions refer to in local mode (`valueFrom`, `envFrom`, `secrets` mounts).
 * With `faas up` running they go through its admin API, which rolls the
 * functions that use them; without, the store in the data directory is
 * edited directly and read at the next `faas up`. Values are read from the
 * command line or from files and are never printed: listings show keys.
 */
import { readFile } from "node:fs/promises";
import { FaasError, references } from "@faas/api";
import { createLogger, type ValueKind } from "@faas/gateway";
import { FunctionStore, ValueStore } from "@faas/local";
import { type CommandContext, gatewayClient } from "../context.js";
import { CliError, EXIT } from "../exit-codes.js";
import { isProcessAlive, readGatewayState } from "../gateway-client.js";
import { formatTable } from "../ui.js";

export interface SetOptions {
  fromFile: string[];
  replace?: boolean;
  json?: boolean;
}

interface SetResult {
  name: string;
  keys: string[];
  rolled?: string[];
  failed?: { function: string; error: string }[];
}

const route = (kind: ValueKind): string => (kind === "secret" ? "/secrets" : "/configs");

/** The running gateway of the data dir (or --gateway), or undefined: then the store is edited directly. */
async function online(ctx: CommandContext) {
  if (ctx.cfg.gatewayUrl === undefined) {
    const state = await readGatewayState(ctx.cfg.dataDir);
    if (state === undefined || !isProcessAlive(state.pid)) return undefined;
  }
  return gatewayClient(ctx.cfg);
}

async function parseData(pairs: readonly string[], files: readonly string[]): Promise<Record<string, string>> {
  const data: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new CliError(EXIT.USAGE, `${pair.split("=")[0]}: expected KEY=VALUE`);
    data[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  for (const spec of files) {
    const eq = spec.indexOf("=");
    if (eq <= 0) throw new CliError(EXIT.USAGE, `--from-file ${spec}: expected KEY=PATH`);
    data[spec.slice(0, eq)] = await readFile(spec.slice(eq + 1), "utf8").catch((err: NodeJS.ErrnoException) => {
      throw new CliError(EXIT.USAGE, `--from-file ${spec}: ${err.code ?? err.message}`);
    });
  }
  if (Object.keys(data).length === 0)
    throw new CliError(EXIT.USAGE, "nothing to set: give KEY=VALUE or --from-file KEY=PATH");
  return data;
}

export async function runValuesSet(
  ctx: CommandContext,
  kind: ValueKind,
  name: string,
  pairs: string[],
  opts: SetOptions,
): Promise<number> {
  const { ui } = ctx;
  const data = await parseData(pairs, opts.fromFile);
  const client = await online(ctx);
  let result: SetResult;
  if (client !== undefined) {
    const spinner = ui.spinner(`setting ${kind} ${name} (functions using it are rolled)…`, { quiet: opts.json });
    try {
      result = (await client.admin("PUT", `${route(kind)}/${encodeURIComponent(name)}`, {
        data,
        replace: opts.replace === true,
      })) as SetResult;
    } finally {
      spinner.stop();
    }
  } else {
    const store = await offlineStore(ctx, kind);
    result = await store.set(name, data, opts.replace === true).catch(usageError);
  }
  if (opts.json) {
    ui.out(JSON.stringify(result));
  } else {
    const rolled = result.rolled?.length ? `; rolled ${result.rolled.join(", ")}` : "";
    ui.out(`${ui.c.green("set")} ${kind} ${ui.c.bold(name)} (keys: ${result.keys.join(", ")})${rolled}`);
    for (const f of result.failed ?? []) ui.note(ui.ce.yellow(`${f.function} keeps its old values: ${f.error}`));
  }
  return result.failed?.length ? EXIT.FAILED : EXIT.OK;
}

export async function runValuesList(ctx: CommandContext, kind: ValueKind, opts: { json?: boolean }): Promise<number> {
  const { ui } = ctx;
  const client = await online(ctx);
  const items =
    client !== undefined
      ? ((await client.admin("GET", route(kind))) as { items: { name: string; keys: string[] }[] }).items
      : (await offlineStore(ctx, kind)).list();
  if (opts.json) {
    ui.out(JSON.stringify(items, null, 2));
    return EXIT.OK;
  }
  if (items.length === 0) {
    ui.out(ui.c.dim(`no ${kind}s; create one with \`faas ${kind} set NAME KEY=VALUE\``));
    return EXIT.OK;
  }
  ui.out(
    formatTable(
      ["NAME", "KEYS"],
      items.map((i) => [ui.c.bold(i.name), i.keys.join(", ")]),
      ui.c,
    ),
  );
  return EXIT.OK;
}

export async function runValuesDelete(
  ctx: CommandContext,
  kind: ValueKind,
  name: string,
  opts: { json?: boolean },
): Promise<number> {
  const { ui } = ctx;
  const client = await online(ctx);
  if (client !== undefined) {
    await client.admin("DELETE", `${route(kind)}/${encodeURIComponent(name)}`);
  } else {
    const users = (await new FunctionStore(ctx.cfg.dataDir, createLogger("silent", "faas")).loadAll()).filter((f) => {
      const refs = references(f.spec);
      return (kind === "secret" ? refs.secrets : refs.configMaps).includes(name);
    });
    if (users.length > 0) {
      throw new CliError(
        EXIT.FAILED,
        `${kind} ${name} is used by ${users.map((f) => f.metadata.name).join(", ")}; change or delete those first`,
      );
    }
    if (!(await (await offlineStore(ctx, kind)).delete(name))) {
      throw new CliError(EXIT.NOT_FOUND, `no ${kind} named "${name}"`, `\`faas ${kind} list\` shows them`);
    }
  }
  ui.out(opts.json ? JSON.stringify({ deleted: name }) : `${ui.c.green("deleted")} ${kind} ${ui.c.bold(name)}`);
  return EXIT.OK;
}

async function offlineStore(ctx: CommandContext, kind: ValueKind): Promise<ValueStore> {
  const store = new ValueStore(ctx.cfg.dataDir, kind);
  await store.load();
  return store;
}

function usageError(err: unknown): never {
  if (err instanceof FaasError && err.code === "INVALID_SPEC") throw new CliError(EXIT.USAGE, err.message);
  throw err;
}
