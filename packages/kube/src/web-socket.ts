/**
 * The smallest WebSocket client the API server's streaming endpoints need
 * (RFC 6455, binary messages only): the upgrade over our own authenticated
 * request, masked frames out, frames in, ping answered, close either way.
 * client-node's own handler needs `ws` and its options object; this keeps
 * authentication in one place (KubeClient.requestOptions).
 */
import { createHash, randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { request as httpRequest } from "node:http";
import { request as httpsRequest, type RequestOptions } from "node:https";
import type { Duplex } from "node:stream";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
const OP_PONG = 0xa;

export interface Frame {
  fin: boolean;
  opcode: number;
  payload: Buffer;
}

/** A client frame: FIN set, masked with a fresh key. */
export function encodeFrame(opcode: number, payload: Buffer, mask: Buffer = randomBytes(4)): Buffer {
  const len = payload.length;
  const head = len < 126 ? 2 : len < 65536 ? 4 : 10;
  const out = Buffer.allocUnsafe(head + 4 + len);
  out[0] = 0x80 | opcode;
  if (len < 126) out[1] = 0x80 | len;
  else if (len < 65536) {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(len, 2);
  } else {
    out[1] = 0x80 | 127;
    out.writeBigUInt64BE(BigInt(len), 2);
  }
  mask.copy(out, head);
  for (let i = 0; i < len; i++) out[head + 4 + i] = (payload[i] as number) ^ (mask[i & 3] as number);
  return out;
}

/** Takes whole frames off the front of `buf`; returns them and what is left. */
export function decodeFrames(buf: Buffer): { frames: Frame[]; rest: Buffer } {
  const frames: Frame[] = [];
  let at = 0;
  for (;;) {
    if (buf.length - at < 2) break;
    const b0 = buf[at] as number;
    const b1 = buf[at + 1] as number;
    let len = b1 & 0x7f;
    let head = 2;
    if (len === 126) {
      if (buf.length - at < 4) break;
      len = buf.readUInt16BE(at + 2);
      head = 4;
    } else if (len === 127) {
      if (buf.length - at < 10) break;
      len = Number(buf.readBigUInt64BE(at + 2));
      head = 10;
    }
    const masked = (b1 & 0x80) !== 0;
    const start = at + head + (masked ? 4 : 0);
    if (buf.length < start + len) break;
    let payload = buf.subarray(start, start + len);
    if (masked) {
      const mask = buf.subarray(at + head, at + head + 4);
      payload = Buffer.from(payload.map((b, i) => b ^ (mask[i & 3] as number)));
    }
    frames.push({ fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, payload });
    at = start + len;
  }
  return { frames, rest: buf.subarray(at) };
}

/**
 * Events: `message` (Buffer, one whole binary message), `close` (once, with an
 * error when it did not end cleanly).
 */
export class WebSocketClient extends EventEmitter {
  #closed = false;
  #partial: Buffer[] = [];

  private constructor(
    private readonly socket: Duplex,
    readonly protocol: string,
    head: Buffer,
  ) {
    super();
    let pending: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      const { frames, rest } = decodeFrames(pending);
      pending = rest;
      for (const f of frames) this.#onFrame(f);
    };
    socket.on("error", (err: Error) => this.#finish(err));
    socket.on("close", () => this.#finish(undefined));
    // Nothing is read before the caller had a chance to listen: the first frames may be in `head`.
    socket.pause();
    setImmediate(() => {
      if (head.length > 0) onData(head);
      socket.on("data", onData);
      socket.resume();
    });
  }

  /** Upgrades a GET at `opts` (from KubeClient.requestOptions) offering `protocols`. */
  static connect(opts: RequestOptions, protocols: readonly string[], timeoutMs: number): Promise<WebSocketClient> {
    const key = randomBytes(16).toString("base64");
    // An `accept` header (KubeClient asks for JSON) makes the API server answer 406 to an upgrade.
    const { accept: _accept, ...base } = opts.headers as Record<string, string>;
    const headers = {
      ...base,
      connection: "Upgrade",
      upgrade: "websocket",
      "sec-websocket-version": "13",
      "sec-websocket-key": key,
      "sec-websocket-protocol": protocols.join(", "),
    };
    return new Promise((resolve, reject) => {
      // Upgrades never share a pooled socket.
      const req = (opts.protocol === "http:" ? httpRequest : httpsRequest)({ ...opts, headers, agent: false });
      const timer = setTimeout(
        () => req.destroy(new Error(`no WebSocket upgrade for ${opts.path} within ${timeoutMs} ms`)),
        timeoutMs,
      );
      req.on("upgrade", (res, socket, head) => {
        clearTimeout(timer);
        const accept = createHash("sha1")
          .update(key + GUID)
          .digest("base64");
        if (res.headers["sec-websocket-accept"] !== accept) {
          socket.destroy();
          reject(new Error(`bad WebSocket handshake for ${opts.path}`));
          return;
        }
        socket.setNoDelay(true);
        resolve(new WebSocketClient(socket, String(res.headers["sec-websocket-protocol"] ?? ""), head));
      });
      req.on("response", (res) => {
        clearTimeout(timer);
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let message = text.slice(0, 300);
          try {
            message = (JSON.parse(text) as { message?: string }).message ?? message;
          } catch {}
          reject(
            Object.assign(new Error(`${opts.path}: HTTP ${res.statusCode}: ${message}`), { status: res.statusCode }),
          );
        });
      });
      req.on("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      req.end();
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  send(data: Buffer): boolean {
    if (this.#closed) return false;
    return this.socket.write(encodeFrame(OP_BINARY, data));
  }

  /** A close frame, then the socket ends. */
  close(): void {
    if (this.#closed) return;
    this.socket.end(encodeFrame(OP_CLOSE, Buffer.from([0x03, 0xe8])));
    // end() flushes; a peer that never closes its side is cut off a moment later.
    setTimeout(() => this.socket.destroy(), 2000).unref();
    this.#finish(undefined, false);
  }

  /** Pauses reading (back-pressure from whoever consumes the messages). */
  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  onDrain(fn: () => void): void {
    this.socket.once("drain", fn);
  }

  #onFrame(f: Frame): void {
    switch (f.opcode) {
      case OP_PING:
        if (!this.#closed) this.socket.write(encodeFrame(OP_PONG, f.payload));
        return;
      case OP_PONG:
        return;
      case OP_CLOSE:
        this.close();
        return;
      default: // OP_BINARY, OP_CONTINUATION (text is never sent on these endpoints)
        this.#partial.push(f.payload);
        if (f.fin) {
          const message = this.#partial.length === 1 ? (this.#partial[0] as Buffer) : Buffer.concat(this.#partial);
          this.#partial = [];
          this.emit("message", message);
        }
    }
  }

  #finish(err: Error | undefined, destroy = true): void {
    if (this.#closed) return;
    this.#closed = true;
    if (destroy) this.socket.destroy();
    this.emit("close", err);
  }
}
