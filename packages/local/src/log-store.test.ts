import { readdirSync, readlinkSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { LogStore } from "./log-store.js";

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

/** Open descriptors of this process on files under `dir`. */
function openUnder(dir: string): number {
  let n = 0;
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir)) n++;
    } catch {
      // gone meanwhile
    }
  }
  return n;
}

describe("LogStore", () => {
  it("closes the files of functions that stopped logging, and reopens them on the next line", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "faas-logs-"));
    dirs.push(dataDir);
    let now = 0;
    const store = new LogStore(dataDir, { idleCloseMs: 30_000, now: () => now });
    await store.init();
    for (let i = 0; i < 50; i++) store.append(`fn-${i}`, "[1 stdout]", `line of fn-${i}`);
    now = 20_000;
    store.append("fn-0", "[1 stdout]", "still logging");
    await new Promise((r) => setTimeout(r, 50));
    expect(store.openFiles).toBe(50);
    expect(openUnder(dataDir)).toBe(50);

    now = 40_000;
    store.closeIdle();
    await new Promise((r) => setTimeout(r, 50));
    expect(store.openFiles).toBe(1);
    expect(openUnder(dataDir)).toBe(1);

    store.append("fn-7", "[2 stdout]", "back again");
    await store.close();
    const text = await readFile(join(dataDir, "logs", "fn-7.log"), "utf8");
    expect(
      text
        .trim()
        .split("\n")
        .map((l) => l.slice(l.indexOf(" ") + 1)),
    ).toEqual(["[1 stdout] line of fn-7", "[2 stdout] back again"]);
  });
});
