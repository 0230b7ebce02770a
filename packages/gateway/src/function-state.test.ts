import { FaasError, makeFunction } from "@faas/api";
import { describe, expect, it } from "vitest";
import { FunctionState, replicaAgent } from "./function-state.js";
import { FunctionTelemetry } from "./metrics.js";

function newState(concurrency = 1): FunctionState {
  const fn = makeFunction("f", { runtime: "python", code: "x", concurrency });
  return new FunctionState(fn, new FunctionTelemetry(), () => replicaAgent(1000));
}
const ep = (id: string) => ({ id, host: "127.0.0.1", port: 1 });

describe("FunctionState", () => {
  it("a lease holds one unit of a replica's capacity; release is idempotent", () => {
    const s = newState(2);
    s.setEndpoints([ep("a")]);
    const l1 = s.tryAcquire();
    const l2 = s.tryAcquire();
    expect(s.tryAcquire()).toBeUndefined();
    expect([s.inFlight, s.endpointInFlight("a")]).toEqual([2, 2]);
    l1?.release();
    l1?.release();
    l1?.release();
    expect([s.inFlight, s.endpointInFlight("a"), l1?.released]).toEqual([1, 1, true]);
    l2?.release();
    expect(s.inFlight).toBe(0);
    s.close();
  });

  it("a parked request gets a lease carrying how long it waited and the cold episode it joined", async () => {
    const s = newState();
    const episode = s.openColdEpisode();
    expect(s.openColdEpisode()).toBeUndefined(); // one episode at a time
    let settled = 0;
    const parked = s.park(10_000, () => settled++);
    expect(s.queued).toBe(1);
    // The backend announces the replica before its scale-up resolves: the lease is
    // handed out at once and its episode's steps are not known yet.
    s.setEndpoints([ep("a")]);
    const lease = await parked.promise;
    expect([s.queued, settled, lease.slot.id]).toEqual([0, 1, "a"]);
    expect(lease.timings?.episode).toBe(episode);
    expect(lease.timings?.episode?.steps).toBeUndefined();
    s.closeColdEpisode(episode as NonNullable<typeof episode>, [{ name: "scaleup", ms: 1 }]);
    expect(lease.timings?.episode?.steps).toEqual([{ name: "scaleup", ms: 1 }]);
    expect(s.coldEpisodeOpen).toBe(false);
    expect(s.coldStarts).toBe(1);
    lease.release();
    s.close();
  });

  it("cancel rejects once; a cancelled request is skipped when capacity frees", async () => {
    const s = newState();
    s.setEndpoints([ep("a")]);
    const held = s.tryAcquire();
    const first = s.park(10_000, () => {});
    const second = s.park(10_000, () => {});
    first.cancel(new FaasError("BAD_REQUEST", "gone"));
    first.cancel(new FaasError("BAD_REQUEST", "twice"));
    await expect(first.promise).rejects.toThrow("gone");
    expect(s.queued).toBe(1);
    held?.release();
    const lease = await second.promise;
    expect([lease.slot.id, s.queued, s.inFlight]).toEqual(["a", 0, 1]);
    second.cancel(new FaasError("BAD_REQUEST", "too late")); // settled already: no effect
    expect(s.queued).toBe(0);
    lease.release();
    s.close();
  });

  it("a parked request past its budget is rejected with DEADLINE_EXCEEDED", async () => {
    const s = newState();
    const parked = s.park(20, () => {});
    await expect(parked.promise).rejects.toMatchObject({ code: "DEADLINE_EXCEEDED" });
    expect(s.queued).toBe(0);
  });

  it("a retired replica takes no new lease and closes its sockets once its last lease is released", () => {
    const s = newState(2);
    s.setEndpoints([ep("a")]);
    const lease = s.tryAcquire();
    const slot = lease?.slot;
    s.setEndpoints([]);
    expect(s.tryAcquire()).toBeUndefined();
    expect(slot?.retired).toBe(true);
    let destroyed = false;
    const destroy = slot?.agent.destroy.bind(slot.agent);
    if (slot) {
      slot.agent.destroy = () => {
        destroyed = true;
        destroy?.();
      };
    }
    lease?.release();
    expect([destroyed, s.inFlight]).toEqual([true, 0]);
  });
});
