/**
 * A timed HTTP client for sequential requests (cold starts, warm latency):
 * one keep-alive connection, time from request start to the last body byte.
 */
import { Agent, request } from "node:http";

export interface TimedResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  ms: number;
}

export class HttpClient {
  readonly #agent = new Agent({ keepAlive: true, maxSockets: 4, keepAliveMsecs: 1000 });
  constructor(private readonly base: URL) {}

  send(
    method: string,
    path: string,
    opts: { body?: string; headers?: Record<string, string> } = {},
  ): Promise<TimedResponse> {
    const headers: Record<string, string | number> = { ...opts.headers };
    if (opts.body !== undefined) {
      headers["content-type"] ??= "application/json";
      headers["content-length"] = Buffer.byteLength(opts.body);
    }
    return new Promise((resolve, reject) => {
      const started = performance.now();
      const req = request(
        { host: this.base.hostname, port: this.base.port, method, path, headers, agent: this.#agent },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("error", reject);
          res.on("end", () =>
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: Buffer.concat(chunks).toString("utf8"),
              ms: performance.now() - started,
            }),
          );
        },
      );
      req.on("error", reject);
      req.end(opts.body);
    });
  }

  async json(
    method: string,
    path: string,
    opts: { body?: unknown; headers?: Record<string, string> } = {},
  ): Promise<unknown> {
    const res = await this.send(method, path, {
      headers: opts.headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    });
    if (res.status >= 300) throw new Error(`${method} ${path} → ${res.status}: ${res.body.slice(0, 500)}`);
    return res.body === "" ? undefined : (JSON.parse(res.body) as unknown);
  }

  close(): void {
    this.#agent.destroy();
  }
}
