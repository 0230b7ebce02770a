import { describe, expect, it } from "vitest";
import { type LeaseObject, leaseRecord, mayAcquire } from "./leader-election.js";

const lease = (holderIdentity: string, renewTime = "2025-01-01T00:00:00.000000Z"): LeaseObject => ({
  metadata: { name: "faas-operator" },
  spec: { holderIdentity, renewTime, leaseDurationSeconds: 15 },
});

describe("mayAcquire", () => {
  const held = lease("other");
  const cases: { name: string; given: Parameters<typeof mayAcquire>; want: boolean }[] = [
    { name: "a free lease", given: [lease(""), "me", undefined, 0], want: true },
    { name: "our own lease (renew)", given: [lease("me"), "me", undefined, 0], want: true },
    { name: "held, first seen now", given: [held, "me", undefined, 100_000], want: false },
    {
      name: "held, unchanged for less than the duration",
      given: [held, "me", { record: leaseRecord(held), observedAtMs: 0 }, 14_999],
      want: false,
    },
    {
      name: "held, unchanged for the whole duration (holder gone)",
      given: [held, "me", { record: leaseRecord(held), observedAtMs: 0 }, 15_000],
      want: true,
    },
    {
      name: "held and renewed since we last looked",
      given: [
        lease("other", "2025-01-01T00:00:05.000000Z"),
        "me",
        { record: leaseRecord(held), observedAtMs: 0 },
        60_000,
      ],
      want: false,
    },
  ];
  for (const c of cases) {
    it(c.name, () => expect(mayAcquire(...c.given)).toBe(c.want));
  }
});
