import { describe, expect, it } from "vitest";
import { decideScale, type ScaleDecision, type ScaleInput } from "./scale-policy.js";

const base: ScaleInput = {
  ready: 1,
  pending: 0,
  minReplicas: 0,
  concurrency: 10,
  idleSeconds: 60,
  inFlight: 0,
  queued: 0,
  idleMs: 0,
  excessMs: undefined,
  scaleInDelayMs: 30_000,
};

const cases: Array<{ name: string; given: Partial<ScaleInput>; want: ScaleDecision }> = [
  { name: "below minReplicas: fill", given: { ready: 0, minReplicas: 2 }, want: { action: "fill", excess: false } },
  {
    name: "pending replicas count toward minReplicas",
    given: { ready: 1, pending: 1, minReplicas: 2 },
    want: { action: "hold", excess: false },
  },
  {
    name: "a replica starting: no scale-in meanwhile",
    given: { ready: 3, pending: 1, idleMs: 1e9 },
    want: { action: "hold", excess: false },
  },
  {
    name: "at minReplicas: hold",
    given: { ready: 2, minReplicas: 2, idleMs: 1e9 },
    want: { action: "hold", excess: false },
  },
  { name: "zero replicas, min 0: hold", given: { ready: 0 }, want: { action: "hold", excess: false } },
  {
    name: "idle past idleSeconds: scale to min",
    given: { ready: 3, minReplicas: 1, idleMs: 60_000 },
    want: { action: "scale-to-min", excess: false },
  },
  {
    name: "idle just under idleSeconds: one replica is what the load needs",
    given: { ready: 1, idleMs: 59_999 },
    want: { action: "hold", excess: false },
  },
  {
    name: "idle long but a request in flight: never to zero",
    given: { ready: 1, inFlight: 1, idleMs: 1e9 },
    want: { action: "hold", excess: false },
  },
  {
    name: "idle long but a request parked: never to zero",
    given: { ready: 1, queued: 1, idleMs: 1e9 },
    want: { action: "hold", excess: false },
  },
  {
    name: "more replicas than the load needs: start the excess clock",
    given: { ready: 3, inFlight: 5, idleMs: 0 },
    want: { action: "hold", excess: true },
  },
  {
    name: "excess shorter than the delay: wait",
    given: { ready: 3, inFlight: 5, excessMs: 29_999 },
    want: { action: "hold", excess: true },
  },
  {
    name: "excess for the delay: remove one",
    given: { ready: 3, inFlight: 5, excessMs: 30_000 },
    want: { action: "remove-one", excess: true },
  },
  {
    name: "load needs every replica: no excess",
    given: { ready: 3, inFlight: 25, excessMs: 60_000 },
    want: { action: "hold", excess: false },
  },
  {
    name: "queued requests count as load",
    given: { ready: 3, inFlight: 10, queued: 15, excessMs: 60_000 },
    want: { action: "hold", excess: false },
  },
  {
    name: "minReplicas above the load's need: never below min",
    given: { ready: 2, minReplicas: 2, inFlight: 1, excessMs: 60_000 },
    want: { action: "hold", excess: false },
  },
];

describe("decideScale", () => {
  it.each(cases)("$name", ({ given, want }) => {
    expect(decideScale({ ...base, ...given })).toEqual(want);
  });
});
