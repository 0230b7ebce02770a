/**
 * What each function's runners print, kept per function under the data
 * directory for `faas logs`, with a size cap (one rotated file is kept).
 * A function's file stays open only while it logs: one idle for
 * `idleCloseMs` is closed (and reopened on its next line), so functions that
 * were deleted or scaled to zero hold no file descriptor.
 */
import { EventEmitter } from "node:events";
import { createWriteStream, statSync, type WriteStream } from "node:fs";
import { mkdir, open, rename, stat } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";

const MAX_LOG_BYTES = 16 * 1024 * 1024;
const TAIL_READ_BYTES = 1024 * 1024;

const IDLE_CLOSE_MS = 30_000;

interface Sink {
  stream: WriteStream;
  bytes: number;
  lastWriteMs: number;
}

export interface LogStoreOptions {
  /** Close a function's file after this long without a line. */
  idleCloseMs?: number;
  /** Clock (ms); tests inject one. */
  now?: () => number;
}

export class LogStore {
  readonly #dir: string;
  readonly #sinks = new Map<string, Sink>();
  readonly #live = new EventEmitter();
  readonly #idleCloseMs: number;
  readonly #now: () => number;
  #sweeper: NodeJS.Timeout | undefined;
  /** Lines not yet written, in order. */
  #pending: { fn: string; text: string; atMs: number }[] = [];

  constructor(dataDir: string, opts: LogStoreOptions = {}) {
    this.#dir = join(dataDir, "logs");
    this.#live.setMaxListeners(0);
    this.#idleCloseMs = opts.idleCloseMs ?? IDLE_CLOSE_MS;
    this.#now = opts.now ?? (() => performance.now());
  }

  async init(): Promise<void> {
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    this.#sweeper = setInterval(() => this.closeIdle(), Math.max(1000, this.#idleCloseMs / 3));
    this.#sweeper.unref();
  }

  /** Functions whose log file is open now. */
  get openFiles(): number {
    return this.#sinks.size;
  }

  /** Closes the files of functions that logged nothing for `idleCloseMs`. */
  closeIdle(): void {
    const now = this.#now();
    for (const [fn, sink] of this.#sinks) {
      if (now - sink.lastWriteMs < this.#idleCloseMs) continue;
      this.#sinks.delete(fn);
      sink.stream.end();
    }
  }

  #path(fn: string): string {
    return join(this.#dir, `${fn}.log`);
  }

  /**
   * Appends a line to the function's file. The file work (opening it on the
   * first line, the write, the size check) and the live readers' copy run a
   * moment later (setImmediate), after the I/O the event loop already has:
   * a runner's "specialized" line arrives right behind its first answer, and
   * opening a new function's file took ~0.5 ms of a cold start.
   */
  append(fn: string, source: string, line: string): void {
    this.#pending.push({ fn, text: `${new Date().toISOString()} ${source} ${line}\n`, atMs: this.#now() });
    if (this.#pending.length === 1) setImmediate(this.#flush);
  }

  readonly #flush = (): void => {
    const pending = this.#pending;
    this.#pending = [];
    for (const { fn, text, atMs } of pending) this.#write(fn, text, atMs);
  };

  #write(fn: string, text: string, atMs: number): void {
    let sink = this.#sinks.get(fn);
    if (sink === undefined) {
      const path = this.#path(fn);
      // Reopened after an idle close: the size cap counts what is already there.
      const bytes = statSync(path, { throwIfNoEntry: false })?.size ?? 0;
      sink = { stream: createWriteStream(path, { flags: "a", mode: 0o600 }), bytes, lastWriteMs: 0 };
      sink.stream.on("error", () => {});
      this.#sinks.set(fn, sink);
    }
    sink.bytes += text.length;
    sink.lastWriteMs = atMs;
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
    clearInterval(this.#sweeper);
    this.#flush();
    await Promise.all([...this.#sinks.values()].map((s) => new Promise<void>((r) => s.stream.end(() => r()))));
    this.#sinks.clear();
  }
}
