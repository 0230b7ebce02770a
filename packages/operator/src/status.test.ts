import { describe, expect, it } from "vitest";
import type { DeploymentObject, FunctionStatus, PodObject } from "./kinds.js";
import { computeStatus, podProblem, type StatusInput, sameStatus } from "./status.js";

const T0 = new Date("2025-01-01T00:00:00Z");
const T1 = new Date("2025-01-01T00:01:00Z");

function dep(
  spec: number,
  s: { ready?: number; updated?: number; total?: number; available?: number; seen?: boolean } = {},
): DeploymentObject {
  return {
    metadata: { name: "fn-hello-deploy", namespace: "ns", generation: 2 },
    spec: { replicas: spec, selector: {}, template: {} },
    status: {
      observedGeneration: s.seen === false ? 1 : 2,
      replicas: s.total ?? spec,
      updatedReplicas: s.updated ?? spec,
      readyReplicas: s.ready ?? spec,
      availableReplicas: s.available ?? s.ready ?? spec,
    },
  };
}

/** A runner killed again and again (say, by its liveness probe while its code spins), running between back-offs. */
const restartingPod = (restarts: number, ready = false): PodObject => ({
  metadata: { name: "fn-hello-deploy-abc", namespace: "ns" },
  status: {
    containerStatuses: [
      {
        name: "runner",
        image: "x",
        imageID: "",
        ready,
        restartCount: restarts,
        state: { running: { startedAt: new Date("2025-01-01T00:00:30Z") } },
        lastState: { terminated: { exitCode: 137, reason: "Error" } },
      },
    ],
  },
});

const waitingPod = (reason: string): PodObject => ({
  metadata: { name: "fn-hello-deploy-abc", namespace: "ns" },
  status: {
    containerStatuses: [
      {
        name: "runner",
        image: "x",
        imageID: "",
        ready: false,
        restartCount: 0,
        state: { waiting: { reason, message: "boom" } },
      },
    ],
  },
});

const input = (over: Partial<StatusInput>): StatusInput => ({
  generation: 3,
  selector: "faas.example.com/function=hello",
  url: "http://gw/invoke/hello",
  codeHash: "abc",
  deployment: undefined,
  pods: [],
  ...over,
});

describe("computeStatus", () => {
  const cases: {
    name: string;
    given: StatusInput;
    want: { ready: [string, string]; progressing: [string, string]; replicas: number; readyReplicas: number };
  }[] = [
    {
      name: "no Deployment yet",
      given: input({}),
      want: { ready: ["False", "Progressing"], progressing: ["True", "Creating"], replicas: 0, readyReplicas: 0 },
    },
    {
      name: "scaled to zero",
      given: input({ deployment: dep(0) }),
      want: { ready: ["True", "ScaledToZero"], progressing: ["False", "ScaledToZero"], replicas: 0, readyReplicas: 0 },
    },
    {
      name: "starting its first replica",
      given: input({ deployment: dep(1, { ready: 0, available: 0 }) }),
      want: { ready: ["False", "Progressing"], progressing: ["True", "RollingOut"], replicas: 1, readyReplicas: 0 },
    },
    {
      name: "available and rolled out",
      given: input({ deployment: dep(2) }),
      want: { ready: ["True", "Available"], progressing: ["False", "RolloutComplete"], replicas: 2, readyReplicas: 2 },
    },
    {
      name: "rolling out new code while old replicas serve",
      given: input({ deployment: dep(1, { updated: 1, total: 2, ready: 1 }) }),
      want: { ready: ["True", "Available"], progressing: ["True", "RollingOut"], replicas: 1, readyReplicas: 1 },
    },
    {
      name: "Deployment change not yet observed",
      given: input({ deployment: dep(1, { seen: false }) }),
      want: { ready: ["True", "Available"], progressing: ["True", "RollingOut"], replicas: 1, readyReplicas: 1 },
    },
    {
      name: "image missing, nothing ready",
      given: input({ deployment: dep(1, { ready: 0, available: 0 }), pods: [waitingPod("ErrImagePull")] }),
      want: {
        ready: ["False", "ImagePullFailed"],
        progressing: ["False", "ImagePullFailed"],
        replicas: 1,
        readyReplicas: 0,
      },
    },
    {
      name: "runner crash-looping",
      given: input({ deployment: dep(1, { ready: 0, available: 0 }), pods: [waitingPod("CrashLoopBackOff")] }),
      want: { ready: ["False", "CrashLoop"], progressing: ["False", "CrashLoop"], replicas: 1, readyReplicas: 0 },
    },
    {
      name: "runner restarting, running between back-offs, never ready",
      given: input({ deployment: dep(1, { ready: 0, available: 0 }), pods: [restartingPod(2)] }),
      want: { ready: ["False", "CrashLoop"], progressing: ["False", "CrashLoop"], replicas: 1, readyReplicas: 0 },
    },
    {
      name: "one restart is not yet a loop",
      given: input({ deployment: dep(1, { ready: 0, available: 0 }), pods: [restartingPod(1)] }),
      want: { ready: ["False", "Progressing"], progressing: ["True", "RollingOut"], replicas: 1, readyReplicas: 0 },
    },
    {
      name: "permanent failure",
      given: input({ deployment: dep(1), failure: { reason: "InvalidSpec", message: "spec.runtime: bad" } }),
      want: { ready: ["False", "InvalidSpec"], progressing: ["False", "Failed"], replicas: 1, readyReplicas: 1 },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const s = computeStatus(c.given, undefined, T0);
      const cond = (t: string) => s.conditions?.find((x) => x.type === t);
      expect([cond("Ready")?.status, cond("Ready")?.reason]).toEqual(c.want.ready);
      expect([cond("Progressing")?.status, cond("Progressing")?.reason]).toEqual(c.want.progressing);
      expect(s.replicas).toBe(c.want.replicas);
      expect(s.readyReplicas).toBe(c.want.readyReplicas);
      expect(s).toMatchObject({
        observedGeneration: 3,
        selector: "faas.example.com/function=hello",
        url: "http://gw/invoke/hello",
        codeHash: "abc",
      });
      expect(cond("Ready")?.lastTransitionTime).toBe("2025-01-01T00:00:00Z");
      expect(cond("Ready")?.observedGeneration).toBe(3);
    });
  }

  it("keeps lastTransitionTime while a condition's status stays, moves it when it flips", () => {
    const first = computeStatus(input({ deployment: dep(1) }), undefined, T0);
    const same = computeStatus(input({ deployment: dep(2) }), first, T1);
    expect(same.conditions?.find((c) => c.type === "Ready")?.lastTransitionTime).toBe("2025-01-01T00:00:00Z");
    expect(same.conditions?.find((c) => c.type === "Ready")?.message).toBe("2 of 2 replicas ready");
    const flipped = computeStatus(input({ deployment: dep(1, { ready: 0, available: 0 }) }), first, T1);
    expect(flipped.conditions?.find((c) => c.type === "Ready")?.lastTransitionTime).toBe("2025-01-01T00:01:00Z");
  });

  it("is unchanged (no write) when recomputed from the same state later", () => {
    const first = computeStatus(input({ deployment: dep(1) }), undefined, T0);
    const again: FunctionStatus = JSON.parse(JSON.stringify(computeStatus(input({ deployment: dep(1) }), first, T1)));
    expect(sameStatus(first, again)).toBe(true);
    expect(sameStatus(undefined, again)).toBe(false);
    expect(sameStatus(first, computeStatus(input({ deployment: dep(2) }), first, T1))).toBe(false);
  });

  it("keeps the last code hash when this reconcile could not compute one", () => {
    const s = computeStatus(
      input({ codeHash: undefined, failure: { reason: "InvalidSpec", message: "x" } }),
      { codeHash: "old" },
      T0,
    );
    expect(s.codeHash).toBe("old");
  });
});

describe("podProblem with the runner's termination message", () => {
  it("quotes the last line the runner left (a package it could not pull) instead of the generic hint", () => {
    const pod = restartingPod(3);
    const cs = pod.status?.containerStatuses?.[0];
    if (cs?.lastState?.terminated) {
      cs.lastState.terminated = {
        exitCode: 1,
        reason: "Error",
        message:
          "starting\npackage sha256:ab… (http://faas-registry.faas-system.svc:5000/default/hello): the registry answered 404 MANIFEST_UNKNOWN\n",
      };
    }
    const problem = podProblem([pod]);
    expect(problem?.reason).toBe("CrashLoop");
    expect(problem?.message).toContain("it said: package sha256:ab…");
    expect(problem?.message).toContain("404 MANIFEST_UNKNOWN");
    expect(problem?.message).not.toContain("kubectl logs --previous");
  });

  it("keeps the hint when the runner left nothing", () => {
    expect(podProblem([restartingPod(3)])?.message).toContain("kubectl logs --previous");
  });
});
