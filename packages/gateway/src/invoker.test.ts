import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseLoadMs } from "./invoker.js";

describe("parseLoadMs (x-faas-load-ms from a runner)", () => {
  it("takes plain non-negative decimals, as both runners write them", () => {
    expect(["0", "7.5", "0.000", "123.456", "29999.99"].map(parseLoadMs)).toEqual([0, 7.5, 0, 123.456, 29999.99]);
  });

  it.each([
    "",
    " ",
    "-1",
    "+1",
    "1e3",
    "1.",
    ".5",
    "NaN",
    "Infinity",
    " 5",
    "5 ",
    "0x10",
    "1.2.3",
    "1,5",
    "\uff11\uff12",
    "9".repeat(400),
    "1.1234567",
  ])("ignores %j", (value) => {
    expect(parseLoadMs(value)).toBeUndefined();
  });

  it("random text: either ignored or a finite, non-negative number that prints back as it came", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 24 }), (value) => {
        const ms = parseLoadMs(value);
        if (ms === undefined) return;
        expect(Number.isFinite(ms) && ms >= 0).toBe(true);
        expect(ms).toBe(Number(value));
      }),
      { numRuns: 2000, seed: 11 },
    );
    fc.assert(
      fc.property(fc.nat({ max: 999_999_999 }), fc.nat({ max: 999 }), (whole, frac) => {
        const value = `${whole}.${String(frac).padStart(3, "0")}`;
        expect(parseLoadMs(value)).toBe(Number(value));
      }),
      { numRuns: 500, seed: 12 },
    );
  });
});
