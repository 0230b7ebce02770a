import { describe, expect, it } from "vitest";
import { decideIdle, type IdleInput } from "./idle-scaler.js";

const NOW = Date.parse("2025-01-01T00:10:00Z");
const base: IdleInput = {
  minReplicas: 0,
  idleSeconds: 60,
  replicas: 1,
  lastRequestAt: undefined,
  lastScaleUpMs: NOW - 3_600_000,
};

describe("decideIdle", () => {
  const cases: { name: string; given: Partial<IdleInput>; want: { scaleToZero: boolean; remainingMs?: number } }[] = [
    {
      name: "idle past the window since the last request",
      given: { lastRequestAt: "2025-01-01T00:08:59Z" },
      want: { scaleToZero: true, remainingMs: 0 },
    },
    {
      name: "exactly at the window",
      given: { lastRequestAt: "2025-01-01T00:09:00Z" },
      want: { scaleToZero: true, remainingMs: 0 },
    },
    {
      name: "a request 59 s ago",
      given: { lastRequestAt: "2025-01-01T00:09:01Z" },
      want: { scaleToZero: false, remainingMs: 1_000 },
    },
    {
      name: "in flight: the annotation was just refreshed",
      given: { lastRequestAt: "2025-01-01T00:10:00.000Z" },
      want: { scaleToZero: false, remainingMs: 60_000 },
    },
    {
      name: "a recent scale-up counts as activity",
      given: { lastRequestAt: "2025-01-01T00:00:00Z", lastScaleUpMs: NOW - 30_000 },
      want: { scaleToZero: false, remainingMs: 30_000 },
    },
    { name: "never invoked, scaled up long ago", given: {}, want: { scaleToZero: true } },
    {
      name: "already at zero",
      given: { replicas: 0, lastRequestAt: "2025-01-01T00:00:00Z" },
      want: { scaleToZero: false },
    },
    {
      name: "minReplicas 1 never scales to zero",
      given: { minReplicas: 1, lastRequestAt: "2025-01-01T00:00:00Z" },
      want: { scaleToZero: false },
    },
    {
      name: "an unparseable annotation falls back to the scale-up time",
      given: { lastRequestAt: "yesterday", lastScaleUpMs: NOW - 10_000 },
      want: { scaleToZero: false, remainingMs: 50_000 },
    },
    {
      name: "a short window",
      given: { idleSeconds: 5, lastRequestAt: "2025-01-01T00:09:54Z" },
      want: { scaleToZero: true },
    },
  ];
  for (const c of cases) {
    it(c.name, () => expect(decideIdle({ ...base, ...c.given }, NOW)).toMatchObject(c.want));
  }
});
