/**
 * HTTP/1.1 fuzzing over raw sockets: generators of random and mutated requests
 * (targets, methods, headers, framing, bodies — malformed bytes included), a
 * sender that half-closes after writing, and a checker that the server's
 * answer is well-formed HTTP or a clean close. Used by the fuzz suites in
 * `npm test` (fixed seed, bounded count) and by `npm run fuzz` (long runs).
 */
import { connect } from "node:net";
import fc from "fast-check";

/** What a fuzz target serves: the paths worth aiming at, and its admin token if any. */
export interface FuzzProfile {
  paths: readonly string[];
  adminToken?: string;
}

export interface FuzzRequest {
  bytes: Buffer;
  /** The method as sent (a HEAD answer has no body). */
  method: string;
  /**
   * When to half-close: at once, or once an answer is complete or nothing has
   * arrived for this many ms (a Node.js server aborts a request whose client
   * half-closes, so closing at once would rarely let a request reach a runner).
   */
  endAfterMs: number;
}

export type OutcomeKind = "response" | "closed" | "reset" | "hang" | "malformed" | "internal";

export interface Outcome {
  kind: OutcomeKind;
  /** Final statuses of the responses received, in order. */
  statuses: number[];
  detail?: string;
  /** The first bytes of the answer. */
  head?: string;
}

/** Outcomes that break the property: a hang, garbage on the wire, or a 500 INTERNAL (a bug of ours). */
export function isFailure(o: Outcome): boolean {
  return o.kind === "hang" || o.kind === "malformed" || o.kind === "internal";
}

const METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"];
const HEADER_NAMES = [
  "host",
  "content-length",
  "transfer-encoding",
  "connection",
  "expect",
  "content-type",
  "authorization",
  "x-faas-deadline-ms",
  "upgrade",
  "te",
  "trailer",
  "keep-alive",
  "accept-encoding",
  "cookie",
  "x-forwarded-for",
  "Content-Length",
  "Transfer-Encoding",
];
const HEADER_VALUES = [
  "close",
  "keep-alive",
  "chunked",
  "gzip, chunked",
  "chunked, gzip",
  "identity",
  "100-continue",
  "0",
  "-1",
  "1e3",
  " 5",
  "18446744073709551616",
  "0x10",
  "application/json",
  "websocket",
  "Bearer ",
  "",
];
const SEGMENTS = [
  "..",
  ".",
  "",
  "%2e%2e",
  "%2F",
  "%00",
  "%",
  "%E0%A4%A",
  "%zz",
  "%C0%AF",
  "%ff",
  "%E2%82%AC",
  "%%",
  "echo",
  "a",
  "?",
  "#",
  "&x=%",
  ";",
  "\\",
  "~",
];

const asciiText = (maxLength: number) => fc.string({ unit: "binary-ascii", maxLength });
/** Bytes anywhere in 0–255: NUL, CR/LF, high bytes that are not UTF-8. */
const rawBytes = (maxLength: number) => fc.uint8Array({ maxLength }).map((a) => Buffer.from(a));
const long = fc
  .tuple(fc.constantFrom("a", "%41", "../", "/", "%E0"), fc.integer({ min: 500, max: 20_000 }))
  .map(([s, n]) => Buffer.from(s.repeat(Math.ceil(n / s.length))));

const segment: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 15, arbitrary: fc.constantFrom(...SEGMENTS).map((s) => Buffer.from(s)) },
  { weight: 15, arbitrary: fc.stringMatching(/^[A-Za-z0-9._~!$&'()*+,;=:@%-]{0,12}$/).map((s) => Buffer.from(s)) },
  { weight: 1, arbitrary: asciiText(16).map((s) => Buffer.from(s, "latin1")) },
  { weight: 1, arbitrary: rawBytes(8) },
  { weight: 1, arbitrary: long },
);

function target(profile: FuzzProfile): fc.Arbitrary<Buffer> {
  const prefixes = [...profile.paths, "/", "*", "http://127.0.0.1/invoke/echo", "/invoke", "//invoke/echo"];
  return fc
    .tuple(
      fc.constantFrom(...prefixes),
      fc.array(fc.tuple(fc.constantFrom("/", "//", ""), segment), { maxLength: 4 }),
      fc.option(fc.tuple(fc.constantFrom("?", "?x=", "??", "?%"), segment), { freq: 3 }),
    )
    .map(([prefix, segs, query]) =>
      Buffer.concat([
        Buffer.from(prefix),
        ...segs.flatMap(([sep, s]) => [Buffer.from(sep), s]),
        ...(query === null ? [] : [Buffer.from(query[0]), query[1]]),
      ]),
    );
}

const method: fc.Arbitrary<string> = fc.oneof(
  { weight: 30, arbitrary: fc.constantFrom(...METHODS) },
  { weight: 1, arbitrary: fc.constantFrom("TRACE", "CONNECT", "PROPFIND", "M-SEARCH", "PRI", "get") },
  { weight: 1, arbitrary: fc.stringMatching(/^[A-Z]{1,10}$/) },
  { weight: 1, arbitrary: asciiText(8) },
);

const version = fc.oneof(
  { weight: 40, arbitrary: fc.constant("HTTP/1.1") },
  { weight: 4, arbitrary: fc.constant("HTTP/1.0") },
  { weight: 1, arbitrary: fc.constantFrom("HTTP/2.0", "HTTP/1.2", "http/1.1", "HTTP/1", "", "HTTP/1.1 x") },
);

function header(profile: FuzzProfile): fc.Arbitrary<[Buffer, Buffer]> {
  const values = profile.adminToken ? [...HEADER_VALUES, `Bearer ${profile.adminToken}`] : HEADER_VALUES;
  const name = fc.oneof(
    { weight: 20, arbitrary: fc.constantFrom(...HEADER_NAMES).map((s) => Buffer.from(s)) },
    { weight: 12, arbitrary: fc.stringMatching(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}$/).map((s) => Buffer.from(s)) },
    { weight: 1, arbitrary: rawBytes(12) },
  );
  const value = fc.oneof(
    { weight: 10, arbitrary: fc.constantFrom(...values).map((s) => Buffer.from(s)) },
    { weight: 8, arbitrary: fc.stringMatching(/^[\x20-\x7e]{0,40}$/).map((s) => Buffer.from(s)) },
    { weight: 2, arbitrary: fc.uint8Array({ maxLength: 40, min: 0x80 }).map((a) => Buffer.from(a)) },
    { weight: 1, arbitrary: asciiText(40).map((s) => Buffer.from(s, "latin1")) },
    { weight: 1, arbitrary: rawBytes(40) },
    { weight: 1, arbitrary: long },
  );
  return fc.tuple(name, value);
}

type Framing =
  | { kind: "none" | "length" | "both" | "te-other" }
  | { kind: "length-off"; by: number }
  | { kind: "length-twice"; other: string }
  | { kind: "chunked"; sizes: number[]; trailer: boolean }
  | { kind: "chunked-bad"; size: string; terminate: boolean };

const framing: fc.Arbitrary<Framing> = fc.oneof(
  { weight: 4, arbitrary: fc.constant({ kind: "none" as const }) },
  { weight: 4, arbitrary: fc.constant({ kind: "length" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "both" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "te-other" as const }) },
  { weight: 1, arbitrary: fc.integer({ min: -50, max: 50 }).map((by) => ({ kind: "length-off" as const, by })) },
  {
    weight: 1,
    arbitrary: fc.constantFrom("0", "1", "7", "x", "").map((other) => ({ kind: "length-twice" as const, other })),
  },
  {
    weight: 4,
    arbitrary: fc
      .record({ sizes: fc.array(fc.integer({ min: 1, max: 700 }), { maxLength: 5 }), trailer: fc.boolean() })
      .map((r) => ({ kind: "chunked" as const, ...r })),
  },
  {
    weight: 1,
    arbitrary: fc
      .record({
        size: fc.constantFrom("zz", "-1", "ffffffffffffffffff", "1;ext", " 5", "5 ", "0x5", "", "10000000"),
        terminate: fc.boolean(),
      })
      .map((r) => ({ kind: "chunked-bad" as const, ...r })),
  },
);

const body = fc.oneof(
  { weight: 8, arbitrary: rawBytes(2048) },
  { weight: 1, arbitrary: fc.integer({ min: 10_000, max: 200_000 }).map((n) => Buffer.alloc(n, 0x61)) },
);

/** A byte-level mutation applied to a whole serialized request. */
const mutation = fc.tuple(
  fc.constantFrom("flip", "insert", "delete", "duplicate", "truncate"),
  fc.nat(),
  fc.nat(255),
  fc.nat(64),
);

function mutate(bytes: Buffer, muts: (readonly [string, number, number, number])[]): Buffer {
  let b = bytes;
  for (const [kind, at, byte, len] of muts) {
    if (b.length === 0) break;
    const i = at % b.length;
    if (kind === "flip") {
      b = Buffer.from(b);
      b[i] = byte;
    } else if (kind === "insert") b = Buffer.concat([b.subarray(0, i), Buffer.from([byte]), b.subarray(i)]);
    else if (kind === "delete") b = Buffer.concat([b.subarray(0, i), b.subarray(i + 1 + len)]);
    else if (kind === "duplicate") b = Buffer.concat([b.subarray(0, i + len), b.subarray(i)]);
    else b = b.subarray(0, i);
  }
  return b;
}

function frame(f: Framing, payload: Buffer, eol: string): { headers: string[]; bytes: Buffer } {
  const n = payload.length;
  switch (f.kind) {
    case "none":
      return { headers: [], bytes: Buffer.alloc(0) };
    case "length":
      return { headers: [`content-length: ${n}`], bytes: payload };
    case "length-off":
      return { headers: [`content-length: ${Math.max(0, n + f.by)}`], bytes: payload };
    case "length-twice":
      return { headers: [`content-length: ${n}`, `content-length: ${f.other}`], bytes: payload };
    case "both":
      return { headers: [`content-length: ${n}`, "transfer-encoding: chunked"], bytes: chunk(payload, [n], eol) };
    case "te-other":
      return { headers: ["transfer-encoding: gzip"], bytes: payload };
    case "chunked": {
      const trailer = f.trailer ? `x-trailer: 1${eol}` : "";
      const bytes = Buffer.concat([chunk(payload, f.sizes, eol, false), Buffer.from(`0${eol}${trailer}${eol}`)]);
      return { headers: ["transfer-encoding: chunked"], bytes };
    }
    case "chunked-bad":
      return {
        headers: ["transfer-encoding: chunked"],
        bytes: Buffer.concat([
          Buffer.from(`${f.size}${eol}`),
          payload.subarray(0, 64),
          Buffer.from(f.terminate ? `${eol}0${eol}${eol}` : ""),
        ]),
      };
  }
}

function chunk(payload: Buffer, sizes: number[], eol: string, terminate = true): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (const size of sizes.length > 0 ? sizes : [payload.length]) {
    if (at >= payload.length) break;
    const piece = payload.subarray(at, at + size);
    at += piece.length;
    parts.push(Buffer.from(`${piece.length.toString(16)}${eol}`), piece, Buffer.from(eol));
  }
  if (at < payload.length) {
    const rest = payload.subarray(at);
    parts.push(Buffer.from(`${rest.length.toString(16)}${eol}`), rest, Buffer.from(eol));
  }
  if (terminate) parts.push(Buffer.from(`0${eol}${eol}`));
  return Buffer.concat(parts);
}

const TAME_SEGMENTS = SEGMENTS.filter((s) => /^[A-Za-z0-9._~!$&'()*+,;=:@%?/-]*$/.test(s));
const TAME_HEADERS = ["accept", "user-agent", "content-type", "cookie", "x-request-id", "x-test", "authorization"];

/** Requests Node's parser accepts, so that they travel on to a function and back. */
function tameRequest(profile: FuzzProfile) {
  const segment = fc.oneof(
    fc.constantFrom(...TAME_SEGMENTS),
    fc.stringMatching(/^[A-Za-z0-9._~!$&'()*+,;=:@%-]{0,12}$/),
    fc.integer({ min: 100, max: 3000 }).map((n) => "%41".repeat(n)),
  );
  const target = fc
    .tuple(fc.constantFrom(...profile.paths), fc.array(segment, { maxLength: 4 }), fc.option(segment))
    .map(([prefix, segs, q]) => Buffer.from(`${prefix}${segs.map((s) => `/${s}`).join("")}${q ? `?${q}` : ""}`));
  const value = fc.oneof(
    fc.stringMatching(/^[\x21-\x7e]([\x20-\x7e]{0,38}[\x21-\x7e])?$/),
    fc.uint8Array({ minLength: 1, maxLength: 20, min: 0x80 }).map((a) => Buffer.from(a).toString("latin1")),
    ...(profile.adminToken ? [fc.constant(`Bearer ${profile.adminToken}`)] : []),
  );
  return fc.record({
    method: fc.constantFrom(...METHODS),
    target,
    version: fc.constant("HTTP/1.1"),
    host: fc.constant(true),
    headers: fc.array(
      fc
        .tuple(fc.constantFrom(...TAME_HEADERS), value)
        .map(([n, v]): [Buffer, Buffer] => [Buffer.from(n), Buffer.from(v, "latin1")]),
      { maxLength: 4 },
    ),
    framing: fc.oneof(
      fc.constant<Framing>({ kind: "none" }),
      fc.constant<Framing>({ kind: "length" }),
      fc
        .array(fc.integer({ min: 1, max: 700 }), { maxLength: 5 })
        .map((sizes): Framing => ({ kind: "chunked", sizes, trailer: false })),
    ),
    body,
    eol: fc.constant("\r\n"),
    endAfterMs: fc.constant(50),
    mutations: fc.constant([]),
  });
}

/** Random and mutated HTTP/1.1 requests aimed at `profile`'s paths: about half well-formed. */
export function fuzzRequest(profile: FuzzProfile): fc.Arbitrary<FuzzRequest> {
  return fc.oneof(tameRequest(profile), wildRequest(profile)).map((r) => {
    const { headers: framingHeaders, bytes: payload } = frame(r.framing, r.body, r.eol);
    const eol = Buffer.from(r.eol);
    const lines: Buffer[] = [Buffer.from(`${r.method} `, "latin1"), r.target, Buffer.from(` ${r.version}`), eol];
    if (r.host) lines.push(Buffer.from("host: 127.0.0.1"), eol);
    for (const [name, value] of r.headers) lines.push(name, Buffer.from(": "), value, eol);
    for (const h of framingHeaders) lines.push(Buffer.from(h), eol);
    lines.push(eol, payload);
    return { method: r.method, endAfterMs: r.endAfterMs, bytes: mutate(Buffer.concat(lines), [...r.mutations]) };
  });
}

/** Anything: malformed bytes in every part, conflicting framing, byte-level mutations. */
function wildRequest(profile: FuzzProfile) {
  return fc.record({
    method,
    target: target(profile),
    version,
    host: fc.oneof({ weight: 9, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
    headers: fc.array(header(profile), { maxLength: 4 }),
    framing,
    body,
    eol: fc.oneof({ weight: 12, arbitrary: fc.constant("\r\n") }, { weight: 1, arbitrary: fc.constant("\n") }),
    endAfterMs: fc.constantFrom(0, 50),
    mutations: fc.oneof(
      { weight: 6, arbitrary: fc.constant([]) },
      { weight: 1, arbitrary: fc.array(mutation, { minLength: 1, maxLength: 5 }) },
    ),
  });
}

/** A request any healthy target answers 200. */
export function normalRequest(path: string): FuzzRequest {
  const bytes = Buffer.from(`GET ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n`);
  return { method: "GET", bytes, endAfterMs: 60_000 };
}

/**
 * Sends `bytes`, half-closes (see `endAfterMs`), and reads until the server
 * closes. A server that has not closed `timeoutMs` after that hangs.
 */
export function sendRaw(port: number, req: FuzzRequest, timeoutMs = 5000): Promise<Outcome> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (how: "closed" | "reset" | "hang", err?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(judge(Buffer.concat(chunks), req.method, how, err));
    };
    let timer: NodeJS.Timeout | undefined;
    let ended = false;
    const end = (): void => {
      if (ended) return;
      ended = true;
      clearTimeout(timer);
      socket.end();
      timer = setTimeout(() => finish("hang"), timeoutMs);
    };
    const idle = (): void => {
      clearTimeout(timer);
      timer = setTimeout(end, req.endAfterMs);
    };
    socket.on("data", (c: Buffer) => {
      chunks.push(c);
      if (ended) return;
      const p = parseResponses(Buffer.concat(chunks), req.method === "HEAD");
      if (p.error === undefined && p.statuses.length > 0) end();
      else idle();
    });
    socket.on("error", (err: NodeJS.ErrnoException) =>
      finish(err.code === "ECONNRESET" || err.code === "EPIPE" ? "reset" : "hang", err.code ?? err.message),
    );
    socket.on("close", () => finish("closed"));
    socket.on("connect", () => {
      socket.write(req.bytes);
      if (req.endAfterMs === 0) end();
      else idle();
    });
  });
}

function judge(data: Buffer, method: string, how: "closed" | "reset" | "hang", err?: string): Outcome {
  const parsed = parseResponses(data, method === "HEAD");
  const detail = parsed.error ?? err;
  if (how === "hang") return { kind: "hang", statuses: parsed.statuses, detail: detail ?? "no answer, no close" };
  if (parsed.internal) return { kind: "internal", statuses: parsed.statuses, detail: parsed.internal };
  // After a reset the tail of an answer may be lost: judge only what arrived.
  if (parsed.error !== undefined && !(how === "reset" && parsed.truncated)) {
    return { kind: "malformed", statuses: parsed.statuses, detail: parsed.error };
  }
  if (parsed.statuses.length > 0) {
    return { kind: "response", statuses: parsed.statuses, head: data.subarray(0, 400).toString("latin1") };
  }
  return { kind: how, statuses: [] };
}

const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})(?: [^\r\n]*)?$/;
const HEADER_LINE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e\x80-\xff]*$/;

interface Parsed {
  statuses: number[];
  error?: string;
  truncated?: boolean;
  internal?: string;
}

/**
 * Checks that `data` is a sequence of complete, well-framed HTTP/1.x
 * responses (RFC 9112): status line, header fields, then a body framed by
 * chunked coding, Content-Length, or the close of the connection.
 */
export function parseResponses(data: Buffer, firstIsHead: boolean): Parsed {
  const statuses: number[] = [];
  let at = 0;
  let head = firstIsHead;
  while (at < data.length) {
    const end = data.indexOf("\r\n\r\n", at);
    if (end < 0) return { statuses, error: "incomplete response head", truncated: true };
    const lines = data.subarray(at, end).toString("latin1").split("\r\n");
    const m = STATUS_LINE.exec(lines[0] ?? "");
    if (!m) return { statuses, error: `bad status line ${JSON.stringify(lines[0]?.slice(0, 80))}` };
    const status = Number(m[1]);
    const headers = new Map<string, string>();
    for (const line of lines.slice(1)) {
      if (!HEADER_LINE.test(line)) return { statuses, error: `bad header line ${JSON.stringify(line.slice(0, 80))}` };
      const i = line.indexOf(":");
      headers.set(line.slice(0, i).toLowerCase(), line.slice(i + 1).trim());
    }
    at = end + 4;
    if (status >= 100 && status < 200) continue;
    statuses.push(status);
    const te = headers.get("transfer-encoding");
    const cl = headers.get("content-length");
    let bodyStart = at;
    // A server that could not parse the request cannot know it was HEAD: then a body follows.
    const headAnswer = head && (at === data.length || data.subarray(at, at + 7).toString("latin1") === "HTTP/1.");
    if (headAnswer || status === 204 || status === 304) {
      // no body
    } else if (te !== undefined) {
      if (te.toLowerCase() !== "chunked") return { statuses, error: `unexpected transfer-encoding ${te}` };
      for (;;) {
        const lineEnd = data.indexOf("\r\n", at);
        if (lineEnd < 0) return { statuses, error: "truncated chunked body", truncated: true };
        const size = Number.parseInt(data.subarray(at, lineEnd).toString("latin1"), 16);
        if (!Number.isFinite(size)) return { statuses, error: "bad chunk size" };
        at = lineEnd + 2 + size + 2;
        if (at > data.length) return { statuses, error: "truncated chunk", truncated: true };
        if (size === 0) break;
      }
    } else if (cl !== undefined) {
      if (!/^\d+$/.test(cl)) return { statuses, error: `bad content-length ${cl}` };
      at += Number(cl);
      if (at > data.length) return { statuses, error: "truncated body", truncated: true };
    } else {
      at = data.length; // close-delimited
    }
    const text = data.subarray(bodyStart, Math.min(at, bodyStart + 4096)).toString("latin1");
    if (status === 500 && (headers.get("x-faas-error") === "INTERNAL" || text.includes('"code":"INTERNAL"'))) {
      return { statuses, internal: text.slice(0, 300) };
    }
    bodyStart = at;
    head = false;
  }
  return { statuses };
}

/** Running totals of a fuzz run. */
export class FuzzStats {
  sent = 0;
  failures: { outcome: Outcome; request: string }[] = [];
  /** A few 5xx answers (not failures by themselves: a function may answer 5xx), to look at. */
  serverErrors: { outcome: Outcome; request: string }[] = [];
  readonly statuses = new Map<number, number>();
  readonly kinds = new Map<OutcomeKind, number>();

  record(req: FuzzRequest, o: Outcome): void {
    this.sent++;
    this.kinds.set(o.kind, (this.kinds.get(o.kind) ?? 0) + 1);
    for (const s of o.statuses) this.statuses.set(s, (this.statuses.get(s) ?? 0) + 1);
    if (isFailure(o) && this.failures.length < 20) this.failures.push({ outcome: o, request: describeRequest(req) });
    else {
      // Up to three examples of each 5xx status.
      const status = o.statuses.find((s) => s >= 500);
      if (status !== undefined && this.serverErrors.filter((e) => e.outcome.statuses.includes(status)).length < 3) {
        this.serverErrors.push({ outcome: o, request: describeRequest(req) });
      }
    }
  }

  get failureCount(): number {
    let n = 0;
    for (const [k, v] of this.kinds) if (k === "hang" || k === "malformed" || k === "internal") n += v;
    return n;
  }
}

/** A request's first bytes, printable. */
export function describeRequest(req: FuzzRequest): string {
  return JSON.stringify(req.bytes.subarray(0, 300).toString("latin1"));
}
