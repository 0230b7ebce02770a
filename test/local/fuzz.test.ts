/**
 * Property-based fuzzing over raw sockets (test/support/fuzz.ts) of the real
 * gateway (`faas up`: local backend, real runners) and of each runner alone.
 * Every request gets a well-formed answer or a clean close, the process stays
 * up, and a normal request right after is answered 200. Fixed seed, bounded
 * count; `npm run fuzz` runs the same property for as long as asked.
 */
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FuzzRequest, FuzzStats, fuzzRequest } from "../support/fuzz.js";
import { caseFailed, type FuzzTarget, fuzzCase, startTarget, type TargetName } from "../support/fuzz-targets.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const SEED = 20261128;
const RUNS = 750;

beforeAll(() => {
  execFileSync("npx", ["tsc", "-b", "packages/cli", "packages/runner-node"], { cwd: ROOT, stdio: "inherit" });
}, 120_000);

function raw(text: string, endAfterMs = 50): FuzzRequest {
  return { method: text.slice(0, text.indexOf(" ")), bytes: Buffer.from(text, "latin1"), endAfterMs };
}

/**
 * Requests that once crashed or broke a target; each must now pass the
 * property, and answer the given status where one is given.
 */
const REGRESSIONS: { name: string; req: FuzzRequest; status?: Partial<Record<TargetName, number>> }[] = [
  {
    name: "malformed percent-encoding in a function name",
    req: raw("GET /invoke/%E0%A4%A HTTP/1.1\r\nhost: x\r\n\r\n"),
  },
  { name: "a lone % in a function name", req: raw("GET /invoke/% HTTP/1.1\r\nhost: x\r\n\r\n") },
  {
    name: "a trailer header on a request without a body",
    req: raw("GET /invoke/echo HTTP/1.1\r\nhost: x\r\ntrailer: x-t\r\n\r\n"),
  },
  {
    name: "a trailer header on a request with a Content-Length body",
    req: raw("POST /invoke/echo HTTP/1.1\r\nhost: x\r\ntrailer: x-t\r\ncontent-length: 3\r\n\r\nabc"),
  },
  {
    name: "malformed percent-encoding in an admin path",
    req: raw("GET /admin/functions/%E0%A4%A HTTP/1.1\r\nhost: x\r\n\r\n"),
  },
  {
    name: "a transfer coding before the final chunked (the gateway forwards plain chunked)",
    req: raw(
      "POST /invoke/echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: x\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
    ),
    status: { gateway: 200, python: 501, node: 200 },
  },
  {
    name: "an HTTP/1.0 request with an unknown Expect and a chunked body (was 502 from the gateway)",
    req: raw(
      `PUT /invoke/echo HTTP/1.0\r\nhost: x\r\nexpect: nonsense\r\ntransfer-encoding: chunked\r\n\r\n200\r\n${"a".repeat(512)}\r\n0\r\n\r\n`,
    ),
    status: { gateway: 200 },
  },
  {
    name: "a TRACE call to a Node.js function (405, not a handler error)",
    req: raw("TRACE /invoke/echo-node HTTP/1.1\r\nhost: x\r\n\r\n"),
    status: { gateway: 405 },
  },
  {
    name: "a TRACE call to the Node.js runner",
    req: raw("TRACE /invoke/ HTTP/1.1\r\nhost: x\r\n\r\n"),
    status: { node: 405 },
  },
];

describe.each<TargetName>(["gateway", "python", "node"])("fuzzing the %s over raw sockets", (name) => {
  let target: FuzzTarget;
  beforeAll(async () => {
    target = await startTarget(name);
  }, 60_000);
  afterAll(async () => {
    await target?.stop();
  });

  it.each(REGRESSIONS)("survives $name", async ({ req, status }) => {
    const r = await fuzzCase(target, req);
    expect(caseFailed(r), JSON.stringify(r)).toBe(false);
    expect(r.outcome.kind).toBe("response");
    const want = status?.[name];
    if (want !== undefined) expect(r.outcome.statuses, r.outcome.head).toEqual([want]);
  });

  it(`answers ${RUNS} random and mutated requests well (seed ${SEED}), and stays up`, async () => {
    const stats = new FuzzStats();
    await fc.assert(
      fc.asyncProperty(fuzzRequest(target.profile), async (req) => {
        const r = await fuzzCase(target, req, stats);
        if (caseFailed(r)) throw new Error(`${JSON.stringify(r)}\n${target.stderr().slice(-2000)}`);
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: true },
    );
    expect(target.alive()).toBe(true);
    // The generator reaches both the function (200) and the parser's refusals (400).
    expect(stats.statuses.get(200)).toBeGreaterThan(RUNS / 10);
    expect(stats.statuses.get(400)).toBeGreaterThan(RUNS / 10);
  }, 60_000);
});
