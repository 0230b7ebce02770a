/**
 * What each function's runners print, kept per function under the data
 * directory for `faas logs`, with a size cap (one rotated file is kept).
 */
import { EventEmitter } from "node:events";
import { createWriteStream, type WriteStream } from "node:fs";
import { mkdir, open, rename, stat } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";

const MAX_LOG_BYTES = 16 * 1024 * 1024;
const TAIL_READ_BYTES = 1024 * 1024;

interface Sink {
  stream: WriteStream;
  bytes: number;
}

export class LogStore {
  readonly #dir: string;
  readonly #sinks = new Map<string, Sink>();
  readonly #live = new EventEmitter();

  constructor(dataDir: string) {
    this.#dir = join(dataDir, "logs");
    this.#live.setMaxListeners(0);
  }

  async init(): Promise<void> {
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
  }

  #path(fn: string): string {
    return join(this.#dir, `${fn}.log`);
  }

  append(fn: string, source: string, line: string): void {
    const text = `${new Date().toISOString()} ${source} ${line}\n`;
    let sink = this.#sinks.get(fn);
    if (sink === undefined) {
      sink = { stream: createWriteStream(this.#path(fn), { flags: "a", mode: 0o600 }), bytes: 0 };
      sink.stream.on("error", () => {});
      this.#sinks.set(fn, sink);
    }
    sink.bytes += text.length;
    sink.stream.write(text);
    this.#live.emit(fn, text);
    if (sink.bytes > MAX_LOG_BYTES) this.#rotate(fn, sink);
  }

  #rotate(fn: string, sink: Sink): void {
    this.#sinks.delete(fn);
    sink.stream.end(() => {
      rename(this.#path(fn), `${this.#path(fn)}.1`).catch(() => {});
    });
  }

  /** The last `tailLines` lines, then (with `follow`) new lines as they come. */
  read(fn: string, opts: { tailLines: number; follow: boolean; signal: AbortSignal }): Readable {
    const out = new Readable({ read() {} });
    const onLine = (text: string): void => {
      out.push(text);
    };
    const finish = (): void => {
      this.#live.off(fn, onLine);
      out.push(null);
    };
    void this.#tail(fn, opts.tailLines).then((text) => {
      if (text) out.push(text);
      if (!opts.follow || opts.signal.aborted) return finish();
      this.#live.on(fn, onLine);
      opts.signal.addEventListener("abort", finish, { once: true });
    });
    return out;
  }

  async #tail(fn: string, lines: number): Promise<string> {
    if (lines === 0) return "";
    const path = this.#path(fn);
    let size: number;
    try {
      size = (await stat(path)).size;
    } catch {
      return "";
    }
    const start = Math.max(0, size - TAIL_READ_BYTES);
    const fh = await open(path, "r");
    try {
      const buf = Buffer.alloc(size - start);
      await fh.read(buf, 0, buf.length, start);
      const all = buf.toString("utf8").split("\n");
      if (all.at(-1) === "") all.pop();
      return all
        .slice(-lines)
        .map((l) => `${l}\n`)
        .join("");
    } finally {
      await fh.close();
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.#sinks.values()].map((s) => new Promise<void>((r) => s.stream.end(() => r()))));
    this.#sinks.clear();
  }
}
