import { describe, expect, it } from "vitest";
import { type ClaimedPodDecision, type ClaimedPodInput, decideClaimedPod } from "./pool-keeper.js";

const NOW = 1_000_000;
const T = { handoffMs: 2_000, orphanMs: 30_000 };
const base: ClaimedPodInput = {
  terminating: false,
  claimFailed: false,
  functionCodeHash: "aaaa",
  podCodeHash: "aaaa",
  restarted: false,
  deploymentReadySinceMs: undefined,
  deploymentReplicas: 1,
  claimedAtMs: NOW - 1_000,
};

describe("decideClaimedPod", () => {
  const cases: { name: string; given: Partial<ClaimedPodInput>; want: ClaimedPodDecision }[] = [
    { name: "just claimed, Deployment pod not ready yet: keep serving", given: {}, want: { delete: false } },
    {
      name: "Deployment pod ready, but only for a moment: keep (gateways switch first)",
      given: { deploymentReadySinceMs: NOW - 1_999 },
      want: { delete: false },
    },
    {
      name: "Deployment pod ready past the hand-off: retire",
      given: { deploymentReadySinceMs: NOW - 2_000 },
      want: { delete: true, reason: "handed-off" },
    },
    {
      name: "the function's code changed: retire at once",
      given: { podCodeHash: "bbbb" },
      want: { delete: true, reason: "stale-code" },
    },
    {
      name: "a claimed pod without a code hash is not trusted",
      given: { podCodeHash: undefined },
      want: { delete: true, reason: "stale-code" },
    },
    {
      name: "a gateway gave up on it mid-claim (runner maybe stuck loading): retire",
      given: { claimFailed: true },
      want: { delete: true, reason: "claim-failed" },
    },
    {
      name: "the runner restarted (it came back generic): retire",
      given: { restarted: true },
      want: { delete: true, reason: "restarted" },
    },
    {
      name: "the Function is gone: retire",
      given: { functionCodeHash: undefined },
      want: { delete: true, reason: "function-gone" },
    },
    {
      name: "already terminating: nothing to do, whatever else holds",
      given: { terminating: true, restarted: true, functionCodeHash: undefined },
      want: { delete: false },
    },
    {
      name: "Deployment still at zero right after the claim (scale patch in flight): keep",
      given: { deploymentReplicas: 0, claimedAtMs: NOW - 29_999 },
      want: { delete: false },
    },
    {
      name: "Deployment at zero long after the claim (went idle): retire",
      given: { deploymentReplicas: 0, claimedAtMs: NOW - 30_000 },
      want: { delete: true, reason: "scaled-to-zero" },
    },
    {
      name: "Deployment at one but its pod never ready: keep serving from the pool pod",
      given: { deploymentReplicas: 1, claimedAtMs: NOW - 600_000 },
      want: { delete: false },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      expect(decideClaimedPod({ ...base, ...c.given }, T, NOW)).toEqual(c.want);
    });
  }
});
