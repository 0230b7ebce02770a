import { PassThrough } from "node:stream";
import picocolors from "picocolors";
import { describe, expect, it } from "vitest";
import { loadCliConfig } from "./config.js";
import { createUi, formatTable } from "./ui.js";

function fakeStream(tty: boolean, columns: number): NodeJS.WriteStream & { text: () => string } {
  const s = new PassThrough() as unknown as NodeJS.WriteStream & { text: () => string };
  let text = "";
  s.on("data", (d: Buffer) => (text += d.toString()));
  Object.assign(s, { isTTY: tty, columns, text: () => text });
  return s;
}

describe("createUi", () => {
  it("animates only on an interactive stderr with a known width", () => {
    const cfg = loadCliConfig({});
    expect(createUi(cfg, fakeStream(true, 80), fakeStream(true, 80)).canAnimate).toBe(true);
    expect(createUi(cfg, fakeStream(true, 80), fakeStream(false, 80)).canAnimate).toBe(false);
    // A pseudo-terminal that reports no size: a spinner would redraw without bound.
    expect(createUi(cfg, fakeStream(true, 80), fakeStream(true, 0)).canAnimate).toBe(false);
  });

  it("colours errors on a TTY, never with NO_COLOR", () => {
    const tty = fakeStream(true, 80);
    createUi(loadCliConfig({}), fakeStream(true, 80), tty).error(
      Object.assign(new Error("boom"), { exitCode: 1 as const, hint: "try again" }),
    );
    expect(tty.text()).toContain("\u001b[31merror: boom");
    const plain = fakeStream(true, 80);
    createUi(loadCliConfig({ NO_COLOR: "1" }), fakeStream(true, 80), plain).error(
      Object.assign(new Error("boom"), { exitCode: 1 as const, hint: "try again" }),
    );
    expect(plain.text()).toBe("error: boom\nhint: try again\n");
  });
});

describe("formatTable", () => {
  it("aligns columns by visible width, ignoring colour codes", () => {
    const c = picocolors.createColors(true);
    const out = formatTable(
      ["NAME", "READY"],
      [
        [c.bold("a"), c.green("1/1")],
        ["longer-name", "0/0"],
      ],
      picocolors.createColors(false),
    );
    const plain = out.replace(new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g"), "");
    expect(plain.split("\n")).toEqual(["NAME         READY", "a            1/1", "longer-name  0/0"]);
  });
});
