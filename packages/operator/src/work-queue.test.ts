import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ExponentialBackoff, WorkQueue } from "./work-queue.js";

const opts = { concurrency: 4, retryBaseMs: 100, retryMaxMs: 1_000 };

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe("ExponentialBackoff", () => {
  it("doubles per failure up to the cap, per key, and forgets", () => {
    const b = new ExponentialBackoff(100, 1_000);
    expect([b.next("a"), b.next("a"), b.next("a"), b.next("a"), b.next("a"), b.next("a")]).toEqual([
      100, 200, 400, 800, 1000, 1000,
    ]);
    expect(b.next("b")).toBe(100);
    b.forget("a");
    expect(b.next("a")).toBe(100);
  });
});

describe("WorkQueue", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("de-duplicates a key queued many times", async () => {
    const seen: string[] = [];
    const q = new WorkQueue(
      async (k) => {
        seen.push(k);
        return undefined;
      },
      opts,
      undefined,
      true,
    );
    for (let i = 0; i < 5; i++) {
      q.add("ns/a");
      q.add("ns/b");
    }
    expect(q.pending).toBe(2);
    q.resume();
    await q.idle();
    expect(seen.sort()).toEqual(["ns/a", "ns/b"]);
  });

  it("never runs one key twice at once; an add while it runs runs it once more after", async () => {
    let running = 0;
    let maxRunning = 0;
    let runs = 0;
    const gate = deferred();
    const q = new WorkQueue(async () => {
      running++;
      runs++;
      maxRunning = Math.max(maxRunning, running);
      if (runs === 1) await gate.promise;
      running--;
      return undefined;
    }, opts);
    q.add("ns/a");
    await vi.advanceTimersByTimeAsync(0);
    q.add("ns/a");
    q.add("ns/a");
    expect(q.active).toBe(1);
    expect(q.pending).toBe(0);
    gate.resolve();
    await q.idle();
    expect(runs).toBe(2);
    expect(maxRunning).toBe(1);
  });

  it("runs different keys in parallel up to the concurrency", async () => {
    const gates = [deferred(), deferred(), deferred()];
    let started = 0;
    const q = new WorkQueue(
      async () => {
        await gates[started++]?.promise;
        return undefined;
      },
      { ...opts, concurrency: 2 },
    );
    q.add("a");
    q.add("b");
    q.add("c");
    await vi.advanceTimersByTimeAsync(0);
    expect([q.active, q.pending]).toEqual([2, 1]);
    gates[0]?.resolve();
    await vi.advanceTimersByTimeAsync(0);
    expect(started).toBe(3);
    for (const g of gates) g.resolve();
    await q.idle();
  });

  it("retries a failing key with exponential backoff, capped, and resets on success", async () => {
    const times: number[] = [];
    const delays: number[] = [];
    let failures = 6;
    const q = new WorkQueue(
      async () => {
        times.push(Date.now());
        if (failures-- > 0) throw new Error("apiserver 503");
        return undefined;
      },
      opts,
      (_k, _e, retryInMs) => delays.push(retryInMs),
    );
    const t0 = Date.now();
    q.add("ns/a");
    await vi.advanceTimersByTimeAsync(10_000);
    expect(delays).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(times.map((t) => t - t0)).toEqual([0, 100, 300, 700, 1500, 2500, 3500]);
    expect(q.backoff.failures("ns/a")).toBe(0);
  });

  it("runs a key again when its handler asks for a later re-check", async () => {
    let runs = 0;
    const q = new WorkQueue(async () => (++runs === 1 ? { requeueAfterMs: 5_000 } : undefined), opts);
    q.add("k");
    await vi.advanceTimersByTimeAsync(4_999);
    expect(runs).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(runs).toBe(2);
  });

  it("holds keys while paused and forgets a deleted key's pending retry", async () => {
    let runs = 0;
    const q = new WorkQueue(
      async () => {
        runs++;
        throw new Error("fail");
      },
      opts,
      undefined,
      true,
    );
    q.add("k");
    await vi.advanceTimersByTimeAsync(1_000);
    expect(runs).toBe(0);
    q.resume();
    await vi.advanceTimersByTimeAsync(0);
    expect(runs).toBe(1);
    q.forget("k");
    await vi.advanceTimersByTimeAsync(5_000);
    expect(runs).toBe(1);
  });
});
