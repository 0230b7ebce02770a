/**
 * The command line: every command, option and help text. Actions call the
 * `run*` functions in `commands/` and return an exit code.
 */
import { Command, InvalidArgumentError, Option } from "commander";
// Commands are imported when they run, so a command loads only what it needs:
// `faas list` never loads the operator, nor through it the Kubernetes client (ADR 0001).
import type { runDeploy } from "./commands/deploy.js";
import type { runInvoke } from "./commands/invoke.js";
import type { KeysOptions } from "./commands/keys.js";
import type { OperatorOptions } from "./commands/operator.js";
import type { runStress } from "./commands/stress.js";
import type { runUp } from "./commands/up.js";
import type { SetOptions } from "./commands/values.js";
import { type CommandContext, type GlobalOptions, withGlobals } from "./context.js";
import { EXIT_CODES_HELP } from "./exit-codes.js";

const collect = (value: string, previous: string[]): string[] => [...previous, value];

function integer(min: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`must be an integer >= ${min}`);
    return n;
  };
}

const ENVIRONMENT_HELP = `Environment:
  FAAS_DATA_DIR     data directory (default ~/.faas): functions, logs, gateway.json
  FAAS_GATEWAY      gateway URL (default: the one \`faas up\` recorded in the data dir)
  FAAS_ADMIN_TOKEN  admin token for a gateway started elsewhere
  FAAS_CONTEXT      kubeconfig context: deploy, invoke, list, logs, delete work on that cluster
  FAAS_KUBECONFIG   kubeconfig file for cluster mode (also switches it on)
  FAAS_NAMESPACE    namespace in cluster mode
  NO_COLOR          turn colours off`;

/**
 * `--kubeconfig`, `--context` and `-n` are global options as well as options of
 * `faas keys …`: wherever they were given they end up in `cfg.cluster`
 * (with FAAS_CONTEXT, FAAS_KUBECONFIG, FAAS_NAMESPACE), which is what keys uses.
 */
function keysOptions(ctx: CommandContext, opts: KeysOptions): KeysOptions {
  const out: KeysOptions = {};
  const { context, kubeconfig, namespace } = ctx.cfg.cluster;
  if (context !== undefined) out.context = context;
  if (kubeconfig !== undefined) out.kubeconfig = kubeconfig;
  if (namespace !== undefined) out.namespace = namespace;
  if (opts.json !== undefined) out.json = opts.json;
  return out;
}

/**
 * `run` receives each action's exit code. `ctx.cfg` is replaced per command
 * with the global options applied.
 */
export function buildProgram(
  ctx: CommandContext,
  version: string,
  run: (code: Promise<number>) => Promise<void>,
): Command {
  const program = new Command("faas")
    .description("Run functions on your machine with scale-to-zero and millisecond cold starts.")
    .version(version, "-V, --version")
    .option("--data-dir <dir>", "data directory of the local platform (default: $FAAS_DATA_DIR or ~/.faas)")
    .option("--gateway <url>", "gateway to talk to (default: the running `faas up` of the data dir)")
    .option("--context <name>", "work on the Kubernetes cluster of this kubeconfig context ($FAAS_CONTEXT)")
    .option(
      "--kubeconfig <file>",
      "kubeconfig for cluster mode ($FAAS_KUBECONFIG; default $KUBECONFIG or ~/.kube/config)",
    )
    .option(
      "-n, --namespace <namespace>",
      "namespace of the Functions in cluster mode (default: the context's, or default)",
    )
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(ctx.ui.ce.red(text)) })
    .showHelpAfterError("(run with --help for usage)")
    .addHelpText(
      "after",
      `
Get started:
  $ npm start                               # same as: faas up (serves examples/ on :8000)
  $ curl localhost:8000/invoke/hello        # hello from runner
  $ faas list                               # replicas, cold starts, p50 latency
  $ faas deploy --name greet --runtime python --code greet.py
  $ faas invoke greet -d '{"name":"ada"}'
  $ faas logs greet -f

On Kubernetes (the platform installed, an operator running):
  $ faas --context faas deploy -f function-hello.yaml   # waits until it is ready
  $ faas --context faas invoke hello                    # port-forwards to a ready gateway pod
  $ faas --context faas list

${EXIT_CODES_HELP}

${ENVIRONMENT_HELP}`,
    );

  const configured = (cmd: Command): CommandContext => {
    ctx.cfg = withGlobals(ctx.cfg, cmd.optsWithGlobals<GlobalOptions>());
    return ctx;
  };

  program
    .command("up")
    .description("start the gateway and local runners in the foreground (Ctrl-C stops)")
    .option("-f, --file <path>", "Function YAML file or folder (repeatable; default: the examples)", collect, [])
    .option("-p, --port <n>", "gateway port (default 8000; 0 picks a free one)", integer(0))
    .option("--host <addr>", "address to bind (default 127.0.0.1)")
    .option("--pool-size <n>", "idle warm runners kept per runtime", integer(0), 2)
    .option("--no-examples", "start without the example functions when no -f is given")
    .option(
      "--log-level <level>",
      "print gateway logs to stderr at this level (otherwise they go to <data-dir>/gateway.log)",
    )
    .option("-v, --verbose", "print debug logs to stderr")
    .addHelpText(
      "after",
      `
Examples:
  $ faas up                                 # the examples, on http://127.0.0.1:8000
  $ faas up -f ./functions --no-examples    # your own folder of Function YAML
  $ faas up --port 0 --data-dir /tmp/faas   # a second, isolated platform on a free port

Functions deployed with \`faas deploy\` are kept in the data dir and come back on the next \`faas up\`.`,
    )
    .action((opts: Parameters<typeof runUp>[1], cmd: Command) =>
      run(import("./commands/up.js").then((m) => m.runUp(configured(cmd), opts))),
    );

  program
    .command("deploy")
    .description("create or update functions from YAML (-f) or from flags")
    .option("-f, --file <path>", "Function YAML file or folder (repeatable)", collect, [])
    .option("--name <name>", "function name (lowercase letters, digits, '-')")
    .addOption(new Option("--runtime <runtime>", "language runtime").choices(["python", "nodejs"]))
    .option("--code <file|dir>", "source file of the function, or a directory (with requirements.txt / package.json)")
    .option("--handler <module.function>", "entry point (default main.handle)")
    .option("--min <n>", "minimum replicas; 0 scales to zero when idle (default 0)", integer(0))
    .option("--max <n>", "maximum replicas (default 5)", integer(1))
    .option("--concurrency <n>", "requests one replica serves at once (default 10)", integer(1))
    .option("--timeout <seconds>", "longest a call may run (default 30)", integer(1))
    .option("--idle <seconds>", "idle time before scaling to --min (default 60)", integer(1))
    .option("-e, --env <KEY=VALUE>", "environment variable for the function (repeatable)", collect, [])
    .option("--wait <seconds>", "on a cluster: how long to wait for the function to be ready (default 180)", integer(1))
    .option(
      "--registry <url>",
      "on a cluster: push packages to this registry (default: the platform's own; $FAAS_REGISTRY)",
    )
    .option("--json", "print the result as JSON")
    .addHelpText(
      "after",
      `
Examples:
  $ faas deploy -f examples/function-hello.yaml
  $ faas deploy -f ./functions              # every *.yaml in the folder
  $ faas deploy --name greet --runtime python --code greet.py --handler greet.handle
  $ faas deploy --name api --runtime nodejs --code api.mjs --min 1 --env GREETING=hi
  $ faas deploy --name report --runtime python --code ./report   # a directory: main.py, requirements.txt, …

A directory (--code DIR, or spec.codeFile: ./DIR) is a package: its files plus
its dependencies, installed here (pip install -r requirements.txt for the
runner's Python; npm ci --omit=dev from package-lock.json) and cached by the
hash of the lockfile; locally it goes to the data dir, on a cluster it is
pushed to the registry and the Function names it by digest (docs/packages.md).

Handlers: Python \`def handle(req)\` returns str, bytes, dict or a response;
Node.js \`export function handle(req: Request)\` returns a Response, string or object.
The spec is checked before anything is sent: every wrong field is listed (exit 2).`,
    )
    .action((opts: Parameters<typeof runDeploy>[1], cmd: Command) =>
      run(import("./commands/deploy.js").then((m) => m.runDeploy(configured(cmd), opts))),
    );

  program
    .command("invoke")
    .description("call a function through the gateway and print its response body")
    .argument("<name>", "function name")
    .option("-d, --data <data>", "request body: text, @file, or @- for stdin (implies POST)")
    .option("-H, --header <'Name: value'>", "request header (repeatable)", collect, [])
    .option("-X, --method <method>", "HTTP method (default GET, or POST with -d)")
    .option("--path <path>", "sub-path and query after /invoke/<name>, e.g. /users/7?full=1")
    .option("-i, --include", "print the status line and response headers first")
    .option("--json", "print {status, headers, body, coldStart} as JSON")
    .addHelpText(
      "after",
      `
Examples:
  $ faas invoke hello
  $ faas invoke echo -d '{"name":"ada"}' --path '/greet?lang=en'
  $ faas invoke echo -d @request.json -H 'x-trace: 1' -i
  $ echo hi | faas invoke echo -d @-
  $ faas invoke hello --json | jq .coldStart

Exit status 1 when the function answers HTTP >= 400, 4 when it does not exist.
A cold call prints its breakdown (parked / scale-up / specialize) on stderr.`,
    )
    .action((name: string, opts: Parameters<typeof runInvoke>[2], cmd: Command) =>
      run(import("./commands/invoke.js").then((m) => m.runInvoke(configured(cmd), name, opts))),
    );

  program
    .command("list")
    .alias("ls")
    .description("show functions: replicas ready/desired, cold starts, p50 latency, URL")
    .option("--json", "print the full summaries as JSON")
    .addHelpText(
      "after",
      `
Example:
  $ faas list
  NAME   RUNTIME  READY  MIN/MAX  COLD-STARTS  P50    AUTH  URL
  hello  python   1/1    0/3      1            0.9ms  none  http://127.0.0.1:8000/invoke/hello

READY is ready/desired replicas; 0/0 means scaled to zero (the next call is a cold start).
AUTH is spec.auth, with the number of API keys for apiKey (never the keys).`,
    )
    .action((opts: { json?: boolean }, cmd: Command) =>
      run(import("./commands/list.js").then((m) => m.runList(configured(cmd), opts))),
    );

  const keys = program
    .command("keys")
    .description("create, list and revoke API keys of functions with spec.auth: apiKey")
    .addHelpText(
      "after",
      `
Examples:
  $ KEY=$(faas keys create hello)           # printed once; only its hash is kept
  $ curl -H "Authorization: Bearer $KEY" localhost:8000/invoke/hello
  $ curl -H "X-Faas-Key: $KEY" localhost:8000/invoke/hello
  $ faas keys list
  $ faas keys revoke 3f9c0a1b2c3d4e5f
  $ faas keys create hello --namespace default    # on Kubernetes (also --kubeconfig, --context)

Locally the keys live hashed in the data dir (keys.json, mode 0600) and \`faas up\` must be running.
With --kubeconfig, --context or --namespace they go straight into the namespace's Secret
faas-api-keys with your own credentials; every gateway replica sees a change within moments.`,
    );
  const clusterOptions = (cmd: Command): Command =>
    cmd
      .option("--kubeconfig <file>", "manage the keys in a cluster with this kubeconfig")
      .option("--context <name>", "kubeconfig context to use (implies the cluster)")
      .option("-n, --namespace <namespace>", "namespace of the functions (implies the cluster; default: the context's)")
      .option("--json", "print JSON");
  clusterOptions(keys.command("create").description("make a new API key for a function and print it once"))
    .argument("<function>", "function name")
    .action((fn: string, opts: KeysOptions, cmd: Command) => {
      const c = configured(cmd);
      return run(import("./commands/keys.js").then((m) => m.runKeysCreate(c, fn, keysOptions(c, opts))));
    });
  clusterOptions(
    keys.command("list").alias("ls").description("show key ids, functions and creation times (never keys)"),
  )
    .argument("[function]", "only this function's keys")
    .action((fn: string | undefined, opts: KeysOptions, cmd: Command) => {
      const c = configured(cmd);
      return run(import("./commands/keys.js").then((m) => m.runKeysList(c, fn, keysOptions(c, opts))));
    });
  clusterOptions(keys.command("revoke").description("revoke a key by its id; it stops working within seconds"))
    .argument("<id>", "key id, as `faas keys list` shows it")
    .action((id: string, opts: KeysOptions, cmd: Command) => {
      const c = configured(cmd);
      return run(import("./commands/keys.js").then((m) => m.runKeysRevoke(c, id, keysOptions(c, opts))));
    });

  program
    .command("logs")
    .description("print what a function's runners wrote to stdout and stderr")
    .argument("<name>", "function name")
    .option("-f, --follow", "keep printing new lines until Ctrl-C")
    .option("--tail <n>", "lines of history to show first", integer(0), 100)
    .addHelpText(
      "after",
      `
Examples:
  $ faas logs hello
  $ faas logs hello -f --tail 0             # only new lines`,
    )
    .action((name: string, opts: { follow?: boolean; tail: number }, cmd: Command) =>
      run(import("./commands/logs.js").then((m) => m.runLogs(configured(cmd), name, opts))),
    );

  program
    .command("delete")
    .alias("rm")
    .description("remove a function (its replicas finish in-flight requests first)")
    .argument("<name>", "function name")
    .option("--json", "print the result as JSON")
    .addHelpText("after", "\nExample:\n  $ faas delete greet")
    .action((name: string, opts: { json?: boolean }, cmd: Command) =>
      run(import("./commands/delete.js").then((m) => m.runDelete(configured(cmd), name, opts))),
    );

  for (const kind of ["secret", "config"] as const) {
    const what = kind === "secret" ? "secrets" : "configs (local ConfigMaps)";
    const values = program
      .command(kind)
      .description(`manage ${what} that functions refer to in local mode; values are never printed`)
      .addHelpText(
        "after",
        `
Functions refer to them as on Kubernetes (${kind === "secret" ? "secretKeyRef, secretRef, spec.secrets mounts" : "configMapKeyRef, configMapRef"}).
With \`faas up\` running, a change rolls every function that uses it; otherwise
the store in the data directory (${kind}s.json, mode 0600) is edited directly.

Examples:
  $ faas ${kind} set db password=s3cret user=app
  $ faas ${kind} set db --from-file password=./password.txt
  $ faas ${kind} list
  $ faas ${kind} delete db`,
      );
    values
      .command("set")
      .description(`create or update a ${kind}'s keys (functions using it are rolled)`)
      .argument("<name>", `${kind} name (lowercase letters, digits, '-', '.')`)
      .argument("[pairs...]", "KEY=VALUE pairs")
      .option("--from-file <KEY=PATH>", "the value of KEY is the file's content (repeatable)", collect, [])
      .option("--replace", "the keys given are all it keeps (others are removed)")
      .option("--json", "print the result as JSON")
      .action((name: string, pairs: string[], opts: SetOptions, cmd: Command) =>
        run(import("./commands/values.js").then((m) => m.runValuesSet(configured(cmd), kind, name, pairs, opts))),
      );
    values
      .command("list")
      .alias("ls")
      .description(`show ${kind}s and their keys (never their values)`)
      .option("--json", "print as JSON")
      .action((opts: { json?: boolean }, cmd: Command) =>
        run(import("./commands/values.js").then((m) => m.runValuesList(configured(cmd), kind, opts))),
      );
    values
      .command("delete")
      .alias("rm")
      .description(`delete a ${kind} (refused while a function refers to it)`)
      .argument("<name>", `${kind} name`)
      .option("--json", "print the result as JSON")
      .action((name: string, opts: { json?: boolean }, cmd: Command) =>
        run(import("./commands/values.js").then((m) => m.runValuesDelete(configured(cmd), kind, name, opts))),
      );
  }

  program
    .command("port-forward")
    .description("on a cluster: serve the gateway on 127.0.0.1, surviving gateway restarts (needs --context)")
    .option("-p, --port <n>", "local port (0 picks a free one)", integer(0), 8000)
    .addHelpText(
      "after",
      `
Example:
  $ faas --context faas port-forward &        # then: curl localhost:8000/invoke/hello

Each connection goes to a gateway pod that is ready at that moment, so a rollout
or a deleted pod does not end the forward (kubectl port-forward svc/... would).`,
    )
    .action((opts: { port: number }, cmd: Command) =>
      run(import("./commands/port-forward.js").then((m) => m.runPortForwardCommand(configured(cmd), opts))),
    );

  program
    .command("operator")
    .description("run the Kubernetes operator (reconciles Function objects) against your kubeconfig")
    .option("-n, --namespace <namespace>", "watch Functions in this namespace only")
    .option("-A, --all-namespaces", "watch every namespace (the default without --namespace)")
    .option("--leader-elect", "take a Lease first (when more than one operator runs)")
    .option("--kubeconfig <file>", "kubeconfig to use (default: $KUBECONFIG or ~/.kube/config)")
    .option("--log-level <level>", "log level: debug, info, warn, error", "info")
    .addHelpText(
      "after",
      `
Examples:
  $ kubectl apply -f crd.yaml -f gateway-deploy.yaml
  $ faas operator --namespace default          # then: kubectl apply -f function-hello.yaml

Logs are JSON lines on stderr. Ctrl-C stops (a leader steps down at once).`,
    )
    .action((opts: OperatorOptions, cmd: Command) => {
      // -n and --kubeconfig are global options too: take them from wherever they were given.
      const globals = cmd.optsWithGlobals<GlobalOptions & OperatorOptions>();
      const merged = {
        ...opts,
        namespace: opts.namespace ?? globals.namespace,
        kubeconfig: opts.kubeconfig ?? globals.kubeconfig,
      };
      return run(import("./commands/operator.js").then((m) => m.runOperatorCommand(configured(cmd), merged)));
    });

  program
    .command("stress")
    .description("load a function with concurrent requests; live req/s, latency and errors")
    .argument("<name>", "function name")
    .option("--duration <time>", "how long: 30s, 2m, 500ms", "30s")
    .option("-c, --concurrency <n>", "requests in flight at once", integer(1), 16)
    .option("--rate <n>", "cap on total requests per second (0 = as fast as replies come)", integer(0), 0)
    .option("--max-requests <n>", "stop after this many requests", integer(1), 10_000_000)
    .option("--path <path>", "sub-path and query after /invoke/<name>, e.g. ?rounds=50000")
    .option("-d, --data <data>", "request body (implies POST)")
    .option("-X, --method <method>", "HTTP method")
    .option("--max-errors <n>", "exit 1 when more requests than this fail", integer(0))
    .option("--json", "print the summary as JSON")
    .addHelpText(
      "after",
      `
Examples:
  $ faas stress hello --duration 10s -c 32
  $ faas stress cpu-test --duration 2m -c 16 --gateway http://localhost:8000   # the HPA walkthrough
  $ faas stress echo -d '{"x":1}' --rate 500 --duration 1m --max-errors 0

Prints one line a second (req/s, p50, p99, errors), then a summary. Ctrl-C stops early.`,
    )
    .action((name: string, opts: Parameters<typeof runStress>[2], cmd: Command) =>
      run(import("./commands/stress.js").then((m) => m.runStress(configured(cmd), name, opts))),
    );

  return program;
}
