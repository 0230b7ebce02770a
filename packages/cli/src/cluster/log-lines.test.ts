import { describe, expect, it } from "vitest";
import { formatLogLine, LineSplitter, mergeByTime, parseLogLine } from "./log-lines.js";

describe("log lines from pods", () => {
  it("splits chunks into whole lines, keeping a partial line for the next chunk", () => {
    const s = new LineSplitter();
    expect(s.push("one\ntw")).toEqual(["one"]);
    expect(s.push("o\r\nthree\n")).toEqual(["two", "three"]);
    expect(s.push("last")).toEqual([]);
    expect(s.end()).toEqual(["last"]);
    expect(s.end()).toEqual([]);
  });

  it("prefixes each line with its pod, after the kubelet's timestamp", () => {
    const line = parseLogLine("fn-hello-deploy-abc", "2026-11-28T09:55:30.053020413Z hello world");
    expect(line).toEqual({ pod: "fn-hello-deploy-abc", time: "2026-11-28T09:55:30.053020413Z", text: "hello world" });
    expect(formatLogLine(line)).toBe("2026-11-28T09:55:30.053020413Z [fn-hello-deploy-abc] hello world");
    expect(formatLogLine(parseLogLine("p", "no timestamp here"))).toBe("[p] no timestamp here");
  });

  it("merges several pods' history in time order, whatever the fraction's length", () => {
    const a = ["2026-01-01T00:00:01.5Z a1", "2026-01-01T00:00:03Z a2"].map((l) => parseLogLine("a", l));
    const b = ["2026-01-01T00:00:01.25Z b1", "2026-01-01T00:00:02.000000001Z b2", "2026-01-01T00:00:03Z b3"].map((l) =>
      parseLogLine("b", l),
    );
    expect(mergeByTime([a, b]).map((l) => l.text)).toEqual(["b1", "a1", "b2", "a2", "b3"]);
  });
});
