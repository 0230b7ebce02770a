/**
 * Log lines from several pods as one stream: each line carries the kubelet's
 * timestamp and its pod's name, `2026-01-02T03:04:05.123456789Z [pod] text`
 * (the shape of local mode's `<time> [<pid> <stream>] text`); history from
 * several pods is merged in time order.
 */

/** Cuts a byte stream into whole lines, keeping an unfinished one for the next chunk. */
export class LineSplitter {
  #carry = "";

  push(chunk: string): string[] {
    const text = this.#carry + chunk;
    const lines = text.split("\n");
    this.#carry = lines.pop() ?? "";
    return lines.map((l) => (l.endsWith("\r") ? l.slice(0, -1) : l));
  }

  /** What is left once the stream ended (a last line without a newline). */
  end(): string[] {
    const rest = this.#carry;
    this.#carry = "";
    return rest === "" ? [] : [rest];
  }
}

const TIMESTAMP = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) ?(.*)$/s;

export interface LogLine {
  pod: string;
  /** RFC 3339 from the kubelet (`timestamps=true`); "" when the line had none. */
  time: string;
  text: string;
}

export function parseLogLine(pod: string, raw: string): LogLine {
  const m = TIMESTAMP.exec(raw);
  return m ? { pod, time: m[1] as string, text: m[2] as string } : { pod, time: "", text: raw };
}

export function formatLogLine(line: LogLine, podLabel: (pod: string) => string = (p) => p): string {
  const prefix = `[${podLabel(line.pod)}]`;
  return line.time ? `${line.time} ${prefix} ${line.text}` : `${prefix} ${line.text}`;
}

/** RFC 3339 with up to nanoseconds, as a sortable key (fractions padded to 9 digits). */
function timeKey(time: string): string {
  const m = /^(.*?)(?:\.(\d+))?Z$/.exec(time);
  if (m === null) return time;
  return `${m[1]}.${(m[2] ?? "").padEnd(9, "0")}`;
}

/** Every pod's lines in time order; lines with equal times keep their pod's order. */
export function mergeByTime(perPod: readonly (readonly LogLine[])[]): LogLine[] {
  const all = perPod.flatMap((lines, podIndex) => lines.map((line, i) => ({ line, podIndex, i })));
  all.sort((a, b) => {
    const ka = timeKey(a.line.time);
    const kb = timeKey(b.line.time);
    if (ka !== kb) return ka < kb ? -1 : 1;
    return a.podIndex - b.podIndex || a.i - b.i;
  });
  return all.map((x) => x.line);
}
