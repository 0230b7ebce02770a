import { describe, expect, it } from "vitest";
import { ScaleGate } from "./scale-gate.js";

function gate() {
  let now = 0;
  const slept: number[] = [];
  const g = new ScaleGate<string>({
    backoffBaseMs: 100,
    backoffMaxMs: 1000,
    repeatWindowMs: 5000,
    now: () => now,
    sleep: async (ms) => {
      slept.push(ms);
      now += ms;
    },
  });
  return { g, slept, advance: (ms: number) => (now += ms) };
}

describe("ScaleGate", () => {
  it("runs one scale-up per function at a time; callers meanwhile share its outcome", async () => {
    const { g } = gate();
    let runs = 0;
    let finish!: (v: { result: string; immediate: boolean }) => void;
    const work = () => {
      runs++;
      return new Promise<{ result: string; immediate: boolean }>((r) => (finish = r));
    };
    const all = Promise.all([g.run("a", work), g.run("a", work), g.run("a", work)]);
    await Promise.resolve();
    await Promise.resolve();
    finish({ result: "done", immediate: false });
    expect(await all).toEqual(["done", "done", "done"]);
    expect(runs).toBe(1);
    // Another function is not held up, and a later call runs again.
    expect(await g.run("b", async () => ({ result: "b", immediate: false }))).toBe("b");
    expect(await g.run("a", async () => ({ result: "again", immediate: false }))).toBe("again");
  });

  const cases: { name: string; outcomes: { immediate: boolean; gapMs: number }[]; wantSleeps: number[] }[] = [
    {
      name: "scale-ups that had to wait never back off",
      outcomes: Array(4).fill({ immediate: false, gapMs: 0 }),
      wantSleeps: [],
    },
    {
      name: "repeats that find a ready endpoint at once back off, doubling to the cap",
      outcomes: Array(7).fill({ immediate: true, gapMs: 0 }),
      wantSleeps: [100, 200, 400, 800, 1000, 1000],
    },
    {
      name: "a repeat after the window starts afresh",
      outcomes: [
        { immediate: true, gapMs: 0 },
        { immediate: true, gapMs: 0 },
        { immediate: true, gapMs: 6000 },
        { immediate: true, gapMs: 0 },
      ],
      wantSleeps: [100, 100],
    },
    {
      name: "a real scale-up in between resets the count",
      outcomes: [
        { immediate: true, gapMs: 0 },
        { immediate: true, gapMs: 0 },
        { immediate: false, gapMs: 0 },
        { immediate: true, gapMs: 0 },
        { immediate: true, gapMs: 0 },
      ],
      wantSleeps: [100, 200, 100],
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const { g, slept, advance } = gate();
      for (const o of c.outcomes) {
        advance(o.gapMs);
        await g.run("f", async () => ({ result: "ok", immediate: o.immediate }));
      }
      expect(slept).toEqual(c.wantSleeps);
      expect((await g.backoffs.get()).values.reduce((a, v) => a + v.value, 0)).toBe(c.wantSleeps.length);
    });
  }

  it("a failed scale-up frees the gate", async () => {
    const { g } = gate();
    await expect(g.run("f", async () => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    await expect(g.run("f", async () => ({ result: "ok", immediate: false }))).resolves.toBe("ok");
  });
});
