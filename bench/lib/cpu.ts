/**
 * CPU time a process (and its direct children, e.g. nginx's worker) has used,
 * from /proc. Sampled around a load run it gives CPU per request, which shifts
 * far less with other load on the machine than throughput does. Linux only;
 * elsewhere it reads as NaN.
 */
import { readFile } from "node:fs/promises";

/** USER_HZ: the unit of utime/stime in /proc/<pid>/stat; 100 on Linux. */
const TICKS_PER_SECOND = 100;

export async function cpuSeconds(pid: number): Promise<number> {
  try {
    let ticks = await processTicks(pid);
    const children = await readFile(`/proc/${pid}/task/${pid}/children`, "utf8").catch(() => "");
    for (const child of children.split(" ").filter(Boolean)) ticks += await processTicks(Number(child));
    return ticks / TICKS_PER_SECOND;
  } catch {
    return Number.NaN;
  }
}

async function processTicks(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}
