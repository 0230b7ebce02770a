/**
 * A Function's status, computed in memory from what its Deployment and pods
 * report: replicas, the invoke URL and the conditions Ready and Progressing.
 * A condition keeps its lastTransitionTime while its status stays the same.
 */
import type { Condition, DeploymentObject, FunctionStatus, PodObject } from "./kinds.js";

export interface StatusInput {
  generation: number | undefined;
  selector: string;
  url: string;
  codeHash: string | undefined;
  deployment: DeploymentObject | undefined;
  pods: readonly PodObject[];
  /** A permanent failure of this reconcile. */
  failure?: { reason: string; message: string } | undefined;
}

type ConditionValue = Pick<Condition, "status" | "reason" | "message">;

/** Pod states no wait will fix: the image is missing or the runner keeps crashing. */
const POD_PROBLEMS: Record<string, string> = {
  ErrImagePull: "ImagePullFailed",
  ImagePullBackOff: "ImagePullFailed",
  ErrImageNeverPull: "ImagePullFailed",
  InvalidImageName: "ImagePullFailed",
  CrashLoopBackOff: "CrashLoop",
  CreateContainerConfigError: "PodConfigInvalid",
};

export function podProblem(pods: readonly PodObject[]): { reason: string; message: string } | undefined {
  for (const pod of pods) {
    if (pod.metadata.deletionTimestamp) continue;
    for (const cs of pod.status?.containerStatuses ?? []) {
      const waiting = cs.state?.waiting;
      const reason = waiting?.reason ? POD_PROBLEMS[waiting.reason] : undefined;
      if (reason) {
        return { reason, message: `pod ${pod.metadata.name}: ${waiting?.reason}: ${waiting?.message ?? cs.image}` };
      }
      // Between two back-offs the runner is "running" again: restarts without ever being ready say it all.
      const last = cs.lastState?.terminated;
      if (cs.restartCount >= CRASH_LOOP_RESTARTS && !cs.ready && last) {
        // The runner's own words when it left any (a package it could not pull, code that failed to load).
        const said = last.message?.trim().split("\n").at(-1)?.slice(0, 400);
        return {
          reason: "CrashLoop",
          message:
            `pod ${pod.metadata.name}: runner restarted ${cs.restartCount} times and never became ready ` +
            `(last exit ${last.exitCode}${last.reason ? `, ${last.reason}` : ""}); ` +
            (said ? `it said: ${said}` : "does the code finish loading? see `kubectl logs --previous`"),
        };
      }
    }
  }
  return undefined;
}

/** Restarts of a never-ready runner after which it counts as crash-looping. */
const CRASH_LOOP_RESTARTS = 2;

function conditionValues(input: StatusInput): { ready: ConditionValue; progressing: ConditionValue } {
  if (input.failure) {
    const { reason, message } = input.failure;
    return { ready: { status: "False", reason, message }, progressing: { status: "False", reason: "Failed", message } };
  }
  const d = input.deployment;
  if (d === undefined) {
    const message = "creating the Deployment";
    return {
      ready: { status: "False", reason: "Progressing", message },
      progressing: { status: "True", reason: "Creating", message },
    };
  }
  const desired = d.spec?.replicas ?? 0;
  const ready = d.status?.readyReplicas ?? 0;
  const updated = d.status?.updatedReplicas ?? 0;
  const total = d.status?.replicas ?? 0;
  const seen = (d.status?.observedGeneration ?? 0) >= (d.metadata.generation ?? 0);
  if (desired === 0 && total === 0 && seen) {
    const message = "no replicas while idle; the next request starts one";
    return {
      ready: { status: "True", reason: "ScaledToZero", message },
      progressing: { status: "False", reason: "ScaledToZero", message },
    };
  }
  const problem = podProblem(input.pods);
  const rolledOut = seen && updated === desired && total === desired && (d.status?.availableReplicas ?? 0) >= desired;
  const progressing: ConditionValue = rolledOut
    ? { status: "False", reason: "RolloutComplete", message: `${ready} of ${desired} replicas ready` }
    : problem
      ? { status: "False", reason: problem.reason, message: problem.message }
      : { status: "True", reason: "RollingOut", message: `${updated} of ${desired} replicas updated, ${ready} ready` };
  const readyValue: ConditionValue =
    ready > 0
      ? { status: "True", reason: "Available", message: `${ready} of ${desired} replicas ready` }
      : problem
        ? { status: "False", reason: problem.reason, message: problem.message }
        : { status: "False", reason: "Progressing", message: `waiting for a ready replica (0 of ${desired})` };
  return { ready: readyValue, progressing };
}

function condition(
  type: string,
  v: ConditionValue,
  prev: readonly Condition[],
  generation: number | undefined,
  now: Date,
): Condition {
  const old = prev.find((c) => c.type === type);
  const lastTransitionTime =
    old && old.status === v.status ? old.lastTransitionTime : now.toISOString().replace(/\.\d+Z$/, "Z");
  return { type, ...v, ...(generation === undefined ? {} : { observedGeneration: generation }), lastTransitionTime };
}

export function computeStatus(input: StatusInput, prev: FunctionStatus | undefined, now: Date): FunctionStatus {
  const { ready, progressing } = conditionValues(input);
  const prevConditions = prev?.conditions ?? [];
  const status: FunctionStatus = {
    replicas: input.deployment?.spec?.replicas ?? 0,
    readyReplicas: input.deployment?.status?.readyReplicas ?? 0,
    selector: input.selector,
    url: input.url,
    conditions: [
      condition("Ready", ready, prevConditions, input.generation, now),
      condition("Progressing", progressing, prevConditions, input.generation, now),
    ],
  };
  if (input.generation !== undefined) status.observedGeneration = input.generation;
  const hash = input.codeHash ?? prev?.codeHash;
  if (hash !== undefined) status.codeHash = hash;
  return status;
}

/** Deep equality of two statuses as JSON (key order as computeStatus writes it). */
export function sameStatus(a: FunctionStatus | undefined, b: FunctionStatus): boolean {
  return a !== undefined && canonical(a) === canonical(b);
}

function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, val: unknown) =>
    val && typeof val === "object" && !Array.isArray(val)
      ? Object.fromEntries(Object.entries(val as Record<string, unknown>).sort(([x], [y]) => x.localeCompare(y)))
      : val,
  );
}

export function readyCondition(status: FunctionStatus | undefined): Condition | undefined {
  return status?.conditions?.find((c) => c.type === "Ready");
}
