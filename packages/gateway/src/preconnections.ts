/**
 * Connections opened to replicas before they are routed to (pooled runners a
 * backend announces with `preconnect`), handed over when the replica becomes
 * one of a function's: the first request to it then skips the TCP connect and
 * the runner's accept. Bounded; the oldest are dropped first.
 */
import { type Agent, request } from "node:http";
import type { Endpoint } from "./backend.js";
import { replicaAgent } from "./function-state.js";

const MAX_PRECONNECTED = 128;

export class Preconnections {
  readonly #agents = new Map<string, Agent>();

  constructor(private readonly keepAliveMs: number) {}

  /** Opens (or refreshes) one kept-alive connection to `e` with a `GET /healthz`. */
  open(e: Endpoint): void {
    const key = `${e.host}:${e.port}`;
    let agent = this.#agents.get(key);
    if (agent === undefined) {
      agent = replicaAgent(this.keepAliveMs);
      this.#agents.set(key, agent);
      if (this.#agents.size > MAX_PRECONNECTED) {
        const [oldestKey, oldest] = this.#agents.entries().next().value as [string, Agent];
        this.#agents.delete(oldestKey);
        oldest.destroy();
      }
    }
    const req = request({ host: e.host, port: e.port, method: "GET", path: "/healthz", agent }, (res) => res.resume());
    req.on("error", () => this.#drop(key));
    req.end();
  }

  /** The pre-opened pool for `e` if there is one (handed over once), else a new one. */
  take(e: Endpoint): Agent {
    const key = `${e.host}:${e.port}`;
    const agent = this.#agents.get(key);
    if (agent === undefined) return replicaAgent(this.keepAliveMs);
    this.#agents.delete(key);
    return agent;
  }

  #drop(key: string): void {
    this.#agents.get(key)?.destroy();
    this.#agents.delete(key);
  }

  close(): void {
    for (const a of this.#agents.values()) a.destroy();
    this.#agents.clear();
  }
}
