/**
 * The gateway in a process of its own, routing one function to one runner the
 * benchmark started (the same runner the direct, bare-proxy and nginx rows
 * hit), so the rows differ only in what sits between client and runner.
 * Usage: gateway-server <function-name> <runtime> <runner-port>.
 */
import { type FunctionResource, makeFunction, type Runtime } from "@faas/api";
import {
  type Backend,
  type BackendListener,
  createLogger,
  type FunctionStatus,
  Gateway,
  loadGatewayConfig,
  type ScaleUpResult,
} from "@faas/gateway";

/** One always-ready replica; nothing to scale. */
class FixedBackend implements Backend {
  readonly kind = "bench-fixed";
  constructor(
    private readonly fn: FunctionResource,
    private readonly port: number,
  ) {}
  async start(listener: BackendListener): Promise<void> {
    listener.endpointsChanged(this.fn.metadata.name, [
      { id: `runner-${this.port}`, host: "127.0.0.1", port: this.port },
    ]);
  }
  async stop(): Promise<void> {}
  getFunction(name: string): FunctionResource | undefined {
    return name === this.fn.metadata.name ? this.fn : undefined;
  }
  listFunctions(): FunctionResource[] {
    return [this.fn];
  }
  status(name: string): FunctionStatus | undefined {
    if (name !== this.fn.metadata.name) return undefined;
    return {
      name,
      runtime: this.fn.spec.runtime,
      readyReplicas: 1,
      desiredReplicas: 1,
      minReplicas: 1,
      maxReplicas: 1,
    };
  }
  async scaleUp(): Promise<ScaleUpResult> {
    return { steps: [] };
  }
  endpointFailed(): void {}
}

const [name, runtime, port] = process.argv.slice(2);
if (name === undefined || runtime === undefined || port === undefined) {
  throw new Error("usage: gateway-server <function-name> <runtime> <runner-port>");
}
// The code is never loaded from here (the runner is already specialized); the spec only routes.
const fn = makeFunction(name, {
  runtime: runtime as Runtime,
  code: "unused",
  minReplicas: 1,
  maxReplicas: 1,
  concurrency: 1000,
});
const log = createLogger(process.env.FAAS_LOG_LEVEL || "warn", "faas-bench-gateway");
const gateway = new Gateway(
  loadGatewayConfig({ ...process.env, FAAS_GATEWAY_PORT: "0" }),
  new FixedBackend(fn, Number(port)),
  log,
);
await gateway.start();
process.on("SIGTERM", () => {
  gateway.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
process.stdout.write(`${JSON.stringify({ event: "listening", port: gateway.port, pid: process.pid })}\n`);
