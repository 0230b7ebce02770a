import { describe, expect, it } from "vitest";
import { deploymentSteps } from "./pod-prober.js";

describe("deploymentSteps", () => {
  it("splits a Deployment-path cold start into scale, scheduled, started and ready", () => {
    expect(deploymentSteps(100, 110, { scheduledAt: 130, startedAt: 500, readyAt: 620 }, 625)).toEqual([
      { name: "scale", ms: 10 },
      { name: "scheduled", ms: 20 },
      { name: "started", ms: 370 },
      { name: "ready", ms: 120 },
    ]);
  });
  it("uses the end of the wait as ready when no probe saw it first, and skips marks never seen", () => {
    expect(deploymentSteps(0, 5, { startedAt: 300 }, 900)).toEqual([
      { name: "scale", ms: 5 },
      { name: "started", ms: 295 },
      { name: "ready", ms: 600 },
    ]);
  });
  it("never reports a negative step when a mark came before the scale request returned", () => {
    const steps = deploymentSteps(0, 50, { scheduledAt: 40, startedAt: 45, readyAt: 60 }, 61);
    expect(steps.every((s) => s.ms >= 0)).toBe(true);
    expect(steps.map((s) => s.name)).toEqual(["scale", "scheduled", "started", "ready"]);
  });
});
