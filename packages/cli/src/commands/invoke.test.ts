import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { coldStartLine, writeBody } from "./invoke.js";

function stream(tty: boolean): NodeJS.WriteStream & { bytes: () => Buffer } {
  const s = new PassThrough() as unknown as NodeJS.WriteStream & { bytes: () => Buffer };
  const chunks: Buffer[] = [];
  s.on("data", (d: Buffer) => chunks.push(d));
  Object.assign(s, { isTTY: tty, bytes: () => Buffer.concat(chunks) });
  return s;
}

describe("writeBody", () => {
  it.each([
    ["a body without a final newline, to a terminal", true, "hello from runner", "hello from runner\n"],
    ["a body with one, to a terminal", true, "hello\n", "hello\n"],
    ["an empty body, to a terminal", true, "", ""],
    ["a body without a final newline, to a pipe", false, "hello from runner", "hello from runner"],
    ["a body ending in \\r\\n, to a pipe", false, "a\r\n", "a\r\n"],
  ])("%s", (_what, tty, body, written) => {
    const out = stream(tty);
    writeBody(out, Buffer.from(body));
    expect(out.bytes().toString()).toBe(written);
  });

  it("passes binary bodies through byte for byte when piped", () => {
    const out = stream(false);
    const body = Buffer.from([0, 255, 10, 13, 0x80]);
    writeBody(out, body);
    expect(out.bytes().equals(body)).toBe(true);
  });
});

describe("coldStartLine", () => {
  it("reads server-timing into one line, and says when there is none", () => {
    expect(coldStartLine({ "server-timing": "parked;dur=0.10, scaleup;dur=1.2, specialize;dur=4" })).toBe(
      "cold start: parked 0.1 ms, scaleup 1.2 ms, specialize 4.0 ms",
    );
    expect(coldStartLine({})).toBe("cold start: (no timing)");
  });
});
