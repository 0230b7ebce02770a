/** Kubernetes API failures as CLI errors with the same exit codes as local mode. */
import { KubeError } from "@faas/kube";
import { CliError, EXIT } from "../exit-codes.js";

const CRD_HINT = "install the platform first: kubectl apply -f crd.yaml -f gateway-deploy.yaml";

/** `what` names the operation: `deploy hello`, `list functions`. */
export function kubeFailure(err: unknown, what: string, where: string): CliError {
  if (err instanceof CliError) return err;
  if (err instanceof KubeError) {
    if (err.status === 404 && /could not find the requested resource/.test(err.message)) {
      return new CliError(EXIT.UNAVAILABLE, `${what}: no Function resource on the cluster (${where})`, CRD_HINT, {
        cause: err,
      });
    }
    if (err.status === 404) {
      return new CliError(EXIT.NOT_FOUND, `${what}: not found (${where})`, "`faas list` shows the deployed functions", {
        cause: err,
      });
    }
    // The API server's own validation (the CRD's schema and CEL rules).
    if (err.status === 422 || err.status === 400) {
      return new CliError(EXIT.USAGE, `${what}: ${err.message.replace(/^\S+ \S+: /, "")}`, undefined, { cause: err });
    }
    return new CliError(EXIT.FAILED, `${what}: ${err.message}`, undefined, { cause: err });
  }
  const message = (err as Error)?.message ?? String(err);
  return new CliError(
    EXIT.UNAVAILABLE,
    `${what}: cannot reach the cluster (${where}): ${message}`,
    "check `kubectl cluster-info` with the same kubeconfig and context",
    { cause: err },
  );
}
