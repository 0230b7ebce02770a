import { parseDuration, runLoad } from "@faas/cli/load-generator";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestPlatform, type TestPlatform } from "../support/platform.js";

describe("faas stress load generator", () => {
  let p: TestPlatform;
  beforeAll(async () => {
    p = await startTestPlatform();
    await p.deploy("hello", { runtime: "nodejs", code: 'export const handle = () => "hi";\n', concurrency: 50 });
    await p.deploy("flaky", {
      runtime: "python",
      code: "def handle(req):\n    if req.query.get('fail'):\n        raise RuntimeError('no')\n    return 'ok'\n",
    });
  }, 60_000);
  afterAll(async () => {
    await p?.stop();
  });

  it("drives a function for the given time and reports per-second windows", async () => {
    const windows: number[] = [];
    const s = await runLoad(
      {
        url: `${p.url}/invoke/hello`,
        method: "GET",
        headers: {},
        body: undefined,
        concurrency: 4,
        durationMs: 1500,
        maxRequests: 1_000_000,
        ratePerSecond: 0,
        signal: new AbortController().signal,
      },
      (w) => windows.push(w.requests),
    );
    expect(s.requests).toBeGreaterThan(10);
    expect(s.errors).toBe(0);
    expect(s.statuses).toEqual({ 200: s.requests });
    expect(windows.length).toBeGreaterThanOrEqual(1);
    expect(s.p50Ms).toBeGreaterThan(0);
    expect(s.durationMs).toBeGreaterThanOrEqual(1500);
  });

  it("paces to a rate and counts errors by status", async () => {
    const s = await runLoad(
      {
        url: `${p.url}/invoke/flaky?fail=1`,
        method: "GET",
        headers: {},
        body: undefined,
        concurrency: 2,
        durationMs: 1000,
        maxRequests: 1_000_000,
        ratePerSecond: 40,
        signal: new AbortController().signal,
      },
      () => {},
    );
    expect(s.requests).toBeGreaterThanOrEqual(30);
    expect(s.requests).toBeLessThanOrEqual(50);
    expect(s.errors).toBe(s.requests);
    expect(Object.keys(s.statuses)).toEqual(["500"]);
  });

  it("parses durations", () => {
    expect(parseDuration("90s")).toBe(90_000);
    expect(parseDuration("2m")).toBe(120_000);
    expect(parseDuration("250ms")).toBe(250);
    expect(parseDuration("3")).toBe(3000);
    expect(() => parseDuration("soon")).toThrow(/not a duration/);
  });
});
