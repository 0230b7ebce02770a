/**
 * `npm run fuzz`: a long property-based fuzz run over raw sockets against the
 * real gateway (`faas up`) and each runner, each in its own process.
 *
 *   npm run fuzz -- [--count 100000] [--seed N] [--target gateway,python,node] [--concurrency 4]
 *
 * Prints, per target: requests sent, crashes (the process exited; 0 expected),
 * failures (hang, malformed answer, 500 INTERNAL, or a normal request after
 * it not answered 200), the distinct statuses seen and the seed. Exits 1 on
 * any crash or failure. A crashed target is restarted and the run goes on.
 */
import { parseArgs } from "node:util";
import fc from "fast-check";
import { FuzzStats, fuzzRequest } from "../test/support/fuzz.js";
import { caseFailed, type FuzzTarget, fuzzCase, startTarget, type TargetName } from "../test/support/fuzz-targets.js";

const { values } = parseArgs({
  options: {
    count: { type: "string", default: "100000" },
    seed: { type: "string" },
    target: { type: "string", default: "gateway,python,node" },
    concurrency: { type: "string", default: "4" },
  },
});
const count = Number(values.count);
const seed = values.seed === undefined ? Date.now() % 2 ** 31 : Number(values.seed);
const concurrency = Number(values.concurrency);
const targets = (values.target ?? "").split(",").filter(Boolean) as TargetName[];
const BATCH = 500;

async function fuzzTarget(name: TargetName): Promise<boolean> {
  let target: FuzzTarget = await startTarget(name);
  const stats = new FuzzStats();
  let crashes = 0;
  let restarting: Promise<void> | undefined;
  let followUpFailures = 0;
  const examples: string[] = [];
  const started = performance.now();
  let lastReport = started;
  try {
    for (let batch = 0; stats.sent < count; batch++) {
      const n = Math.min(BATCH, count - stats.sent);
      const reqs = fc.sample(fuzzRequest(target.profile), { seed: seed + batch, numRuns: n });
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < reqs.length) {
          const req = reqs[next++]!;
          const current = target;
          const r = await fuzzCase(current, req, stats);
          if (!r.alive) {
            if (current === target && restarting === undefined) {
              crashes++;
              examples.push(`crash (batch ${batch}): ${current.stderr().slice(-2000)}`);
              restarting = (async () => {
                await current.stop();
                target = await startTarget(name);
                restarting = undefined;
              })();
            }
            await restarting;
          } else if (r.followUp !== undefined) {
            followUpFailures++;
            if (examples.length < 10) examples.push(`follow-up failed: ${JSON.stringify(r.followUp)}`);
          } else if (caseFailed(r) && examples.length < 10) {
            examples.push(JSON.stringify(r.outcome));
          }
        }
      };
      await Promise.all(Array.from({ length: concurrency }, worker));
      if (performance.now() - lastReport > 10_000) {
        lastReport = performance.now();
        const rate = stats.sent / ((lastReport - started) / 1000);
        console.error(`  ${name}: ${stats.sent}/${count} sent (${rate.toFixed(0)}/s)`);
      }
    }
  } finally {
    await target.stop();
  }
  const seconds = (performance.now() - started) / 1000;
  const statuses = [...stats.statuses.entries()].sort((a, b) => a[0] - b[0]);
  console.log(`\n${name}  (seed ${seed}, ${seconds.toFixed(0)} s, concurrency ${concurrency})`);
  console.log(`  requests sent:        ${stats.sent}`);
  console.log(`  crashes:              ${crashes}`);
  console.log(`  failures:             ${stats.failureCount} (hang, malformed or 500 INTERNAL)`);
  console.log(`  follow-up failures:   ${followUpFailures}`);
  console.log(`  outcomes:             ${[...stats.kinds].map(([k, v]) => `${k} ${v}`).join(", ")}`);
  console.log(`  distinct statuses:    ${statuses.map(([s, n]) => `${s}×${n}`).join(" ")}`);
  for (const f of stats.failures.slice(0, 5)) console.log(`  failure: ${JSON.stringify(f.outcome)} ← ${f.request}`);
  for (const f of stats.serverErrors) console.log(`  5xx: ${JSON.stringify(f.outcome.head)} ← ${f.request}`);
  for (const e of [...examples.filter((e) => e.startsWith("crash")), ...examples].slice(0, 5)) console.log(`  ${e}`);
  return crashes === 0 && stats.failureCount === 0 && followUpFailures === 0;
}

let ok = true;
console.log(`fuzz: ${count} requests per target, seed ${seed}, targets ${targets.join(", ")}`);
for (const name of targets) ok = (await fuzzTarget(name)) && ok;
process.exit(ok ? 0 : 1);
