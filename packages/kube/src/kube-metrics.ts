/**
 * What a process asks of the API server, counted: every request by verb,
 * resource and status code, and every exception a watch event handler threw.
 * The counters belong to one KubeClient and are registered by whoever serves
 * metrics (the gateway, the operator).
 */
import { Counter, type Registry } from "prom-client";

export interface RequestLabels {
  /** Kubernetes' verbs: get, list, watch, create, update, patch, apply, delete, deletecollection. */
  verb: string;
  /** `deployments`, `deployments/scale`, `functions`, … */
  resource: string;
}

export class KubeMetrics {
  readonly requests = new Counter({
    name: "faas_kube_api_requests_total",
    help: "Requests sent to the Kubernetes API server, by verb, resource and HTTP status (`error`: no answer).",
    labelNames: ["verb", "resource", "code"],
    registers: [],
  });
  readonly handlerErrors = new Counter({
    name: "faas_kube_event_handler_errors_total",
    help: "Exceptions thrown by handlers of watch events (logged and skipped; the watch goes on).",
    labelNames: ["resource"],
    registers: [],
  });
  readonly relists = new Counter({
    name: "faas_kube_relists_total",
    help: "Full lists a reflector made, by resource and why (start, expired, error).",
    labelNames: ["resource", "reason"],
    registers: [],
  });

  /** Adds the counters to `registry` (once; a second call with the same registry is a no-op). */
  register(registry: Registry): void {
    const all = [
      ["faas_kube_api_requests_total", this.requests],
      ["faas_kube_event_handler_errors_total", this.handlerErrors],
      ["faas_kube_relists_total", this.relists],
    ] as const;
    for (const [name, metric] of all) {
      if (registry.getSingleMetric(name) === undefined) registry.registerMetric(metric);
    }
  }
}

/** Labels of a request from its method and path, as the API server's own `apiserver_request_total` names them. */
export function requestLabels(method: string, pathWithQuery: string, contentType = ""): RequestLabels {
  const [path = "", query = ""] = pathWithQuery.split("?", 2);
  const segments = path.split("/").filter((s) => s !== "");
  // /api/v1/… or /apis/<group>/<version>/…; anything else (/version, /readyz) is named by its path.
  let rest: string[];
  if (segments[0] === "api") rest = segments.slice(2);
  else if (segments[0] === "apis") rest = segments.slice(3);
  else return { verb: method.toLowerCase(), resource: path || "/" };
  if (rest[0] === "namespaces" && rest.length > 2) rest = rest.slice(2);
  const [plural = "", name, subresource] = rest;
  const resource = subresource ? `${plural}/${subresource}` : plural;
  const watching = /(^|&)watch=(1|true)(&|$)/.test(query);
  let verb: string;
  switch (method.toUpperCase()) {
    case "GET":
      verb = watching ? "watch" : name === undefined ? "list" : "get";
      break;
    case "POST":
      verb = "create";
      break;
    case "PUT":
      verb = "update";
      break;
    case "PATCH":
      verb = contentType.startsWith("application/apply-patch") ? "apply" : "patch";
      break;
    case "DELETE":
      verb = name === undefined ? "deletecollection" : "delete";
      break;
    default:
      verb = method.toLowerCase();
  }
  return { verb, resource };
}
