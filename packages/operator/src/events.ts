/**
 * Kubernetes Events (core/v1) about Functions, for `kubectl describe function`
 * and `kubectl get events`. Best effort: a failed Event never fails a reconcile.
 */
import { randomBytes } from "node:crypto";
import { FUNCTION_API_VERSION, FUNCTION_KIND } from "@faas/api";
import { type KubeClient, RESOURCES } from "@faas/kube";
import type { Logger } from "pino";
import type { RawFunction } from "./kinds.js";

export const REPORTING_CONTROLLER = "faas-operator";

export class EventRecorder {
  constructor(
    private readonly client: KubeClient,
    private readonly instance: string,
    private readonly log: Logger,
  ) {}

  record(fn: RawFunction, type: "Normal" | "Warning", reason: string, message: string): void {
    const namespace = fn.metadata.namespace ?? "default";
    const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    const event = {
      apiVersion: "v1",
      kind: "Event",
      metadata: { name: `${fn.metadata.name}.${Date.now().toString(16)}${randomBytes(2).toString("hex")}`, namespace },
      involvedObject: {
        apiVersion: FUNCTION_API_VERSION,
        kind: FUNCTION_KIND,
        name: fn.metadata.name,
        namespace,
        uid: fn.metadata.uid,
        resourceVersion: fn.metadata.resourceVersion,
      },
      type,
      reason,
      message: message.slice(0, 1000),
      source: { component: REPORTING_CONTROLLER },
      reportingComponent: REPORTING_CONTROLLER,
      reportingInstance: this.instance.slice(0, 128),
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    };
    this.client.create({ ...RESOURCES.events, namespace }, event, REPORTING_CONTROLLER).then(
      () => this.log.debug({ fn: fn.metadata.name, reason }, "event"),
      (err: unknown) =>
        this.log.warn({ fn: fn.metadata.name, reason, err: (err as Error).message }, "could not record event"),
    );
  }
}
