import { describe, expect, it } from "vitest";
import { RoutingCheck, type RoutingVerdict } from "./routing-check.js";

describe("RoutingCheck", () => {
  const cases: {
    name: string;
    steps: { atMs: number; ready: number; routable: number; want: RoutingVerdict }[];
    wantViolated: boolean;
    wantCount: number;
  }[] = [
    {
      name: "routable replicas are fine",
      steps: [{ atMs: 0, ready: 2, routable: 2, want: "ok" }],
      wantViolated: false,
      wantCount: 0,
    },
    {
      name: "no ready replica: nothing to route",
      steps: [
        { atMs: 0, ready: 0, routable: 0, want: "ok" },
        { atMs: 5000, ready: 0, routable: 0, want: "ok" },
      ],
      wantViolated: false,
      wantCount: 0,
    },
    {
      name: "a mismatch shorter than the grace period is pending, then clears",
      steps: [
        { atMs: 0, ready: 1, routable: 0, want: "pending" },
        { atMs: 900, ready: 1, routable: 0, want: "pending" },
        { atMs: 950, ready: 1, routable: 1, want: "ok" },
        { atMs: 5000, ready: 1, routable: 0, want: "pending" },
      ],
      wantViolated: false,
      wantCount: 0,
    },
    {
      name: "a lasting mismatch is a violation, counted once per grace period",
      steps: [
        { atMs: 0, ready: 1, routable: 0, want: "pending" },
        { atMs: 1000, ready: 1, routable: 0, want: "violated" },
        { atMs: 1500, ready: 1, routable: 0, want: "pending" },
        { atMs: 2000, ready: 1, routable: 0, want: "violated" },
      ],
      wantViolated: true,
      wantCount: 2,
    },
    {
      name: "a violation clears when the replica becomes routable",
      steps: [
        { atMs: 0, ready: 1, routable: 0, want: "pending" },
        { atMs: 1000, ready: 1, routable: 0, want: "violated" },
        { atMs: 1100, ready: 1, routable: 1, want: "ok" },
      ],
      wantViolated: false,
      wantCount: 1,
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      let now = 0;
      const check = new RoutingCheck({ graceMs: 1000, now: () => now });
      for (const s of c.steps) {
        now = s.atMs;
        expect(check.observe("f", s.ready, s.routable)).toBe(s.want);
      }
      expect(check.violated.has("f")).toBe(c.wantViolated);
      expect((await check.violations.get()).values.reduce((a, v) => a + v.value, 0)).toBe(c.wantCount);
    });
  }
});
