/**
 * Leader election on a coordination.k8s.io/v1 Lease, the protocol of client-go:
 * the holder renews `spec.renewTime` every `retryPeriodMs`; others take the
 * lease over once it has not changed for `leaseDurationSeconds` as seen on
 * their own clock (no cross-machine clock comparison). Every write carries the
 * lease's resourceVersion, so two candidates never both win a round.
 */
import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import { type KubeClient, KubeError, type KubeObject, RESOURCES, resourcePath } from "./kube-client.js";

export interface LeaseObject extends KubeObject {
  spec?: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  /** Unique per process: pod name, or host and pid. */
  identity: string;
  leaseDurationSeconds?: number;
  /** A leader that cannot renew for this long steps down. */
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  now?: () => number;
}

export type LeaderElectorEvents = { started: []; stopped: [] };

/** What a candidate remembers about the lease between rounds. */
export interface LeaseObservation {
  /** holderIdentity + renewTime of the last record seen. */
  record: string;
  /** Local time at which `record` was first seen. */
  observedAtMs: number;
}

/**
 * Whether `identity` may write the lease now: it is free, ours, or its holder
 * has not renewed it for a whole lease duration on our clock.
 */
export function mayAcquire(
  lease: LeaseObject,
  identity: string,
  seen: LeaseObservation | undefined,
  nowMs: number,
): boolean {
  const holder = lease.spec?.holderIdentity ?? "";
  if (holder === "" || holder === identity) return true;
  const durationMs = (lease.spec?.leaseDurationSeconds ?? 15) * 1000;
  if (seen === undefined || seen.record !== leaseRecord(lease)) return false;
  return nowMs - seen.observedAtMs >= durationMs;
}

export const leaseRecord = (lease: LeaseObject): string =>
  `${lease.spec?.holderIdentity ?? ""}|${lease.spec?.renewTime ?? ""}`;

const microTime = (ms: number): string => new Date(ms).toISOString().replace("Z", "000Z");

export class LeaderElector extends EventEmitter<LeaderElectorEvents> {
  #leading = false;
  #running = false;
  #seen: LeaseObservation | undefined;
  #lastRenewMs = 0;
  #timer: NodeJS.Timeout | undefined;
  readonly #now: () => number;
  readonly #durationS: number;
  readonly #renewDeadlineMs: number;
  readonly #retryMs: number;

  constructor(
    private readonly client: KubeClient,
    private readonly opts: LeaderElectionOptions,
    private readonly log: Logger,
  ) {
    super();
    this.#now = opts.now ?? Date.now;
    this.#durationS = opts.leaseDurationSeconds ?? 15;
    this.#renewDeadlineMs = opts.renewDeadlineMs ?? 10_000;
    this.#retryMs = opts.retryPeriodMs ?? 5_000;
  }

  get isLeader(): boolean {
    return this.#leading;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    void this.#round();
  }

  /** Stops campaigning; a leader steps down and frees the lease for the others. */
  async stop(): Promise<void> {
    this.#running = false;
    clearTimeout(this.#timer);
    if (!this.#leading) return;
    this.#setLeading(false);
    try {
      const lease = await this.client.get<LeaseObject>(this.#ref());
      if (lease.spec?.holderIdentity !== this.opts.identity) return;
      await this.#write({
        ...lease,
        spec: { ...lease.spec, holderIdentity: "", leaseDurationSeconds: 1, renewTime: microTime(this.#now()) },
      });
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "could not release the lease");
    }
  }

  #ref() {
    return { ...RESOURCES.leases, namespace: this.opts.namespace, name: this.opts.name };
  }

  async #round(): Promise<void> {
    if (!this.#running) return;
    let won = false;
    try {
      won = await this.#tryAcquireOrRenew();
    } catch (err) {
      this.log.warn({ err: (err as Error).message, lease: this.opts.name }, "lease round failed");
    }
    if (!this.#running) return;
    if (won) {
      this.#lastRenewMs = this.#now();
      this.#setLeading(true);
    } else if (this.#leading && this.#now() - this.#lastRenewMs >= this.#renewDeadlineMs) {
      this.log.warn({ lease: this.opts.name }, "could not renew the lease in time; stepping down");
      this.#setLeading(false);
    } else if (this.#leading && !won && this.#seen && !this.#seen.record.startsWith(`${this.opts.identity}|`)) {
      // Someone else holds it now: we lost it, stop at once.
      this.#setLeading(false);
    }
    const jitter = this.#leading ? 1 : 1 + Math.random() * 0.2;
    this.#timer = setTimeout(() => void this.#round(), this.#retryMs * jitter);
  }

  #setLeading(leading: boolean): void {
    if (leading === this.#leading) return;
    this.#leading = leading;
    this.log.info(
      { lease: this.opts.name, identity: this.opts.identity },
      leading ? "became leader" : "stopped leading",
    );
    this.emit(leading ? "started" : "stopped");
  }

  async #tryAcquireOrRenew(): Promise<boolean> {
    const now = this.#now();
    const lease = await this.client.find<LeaseObject>(this.#ref());
    if (lease === undefined) {
      try {
        await this.client.create(
          { ...RESOURCES.leases, namespace: this.opts.namespace },
          {
            apiVersion: "coordination.k8s.io/v1",
            kind: "Lease",
            metadata: { name: this.opts.name, namespace: this.opts.namespace },
            spec: this.#spec(now, now, 0),
          },
          "faas-leader-election",
        );
        return true;
      } catch (err) {
        if (err instanceof KubeError && err.status === 409) return false;
        throw err;
      }
    }
    const record = leaseRecord(lease);
    if (this.#seen?.record !== record) this.#seen = { record, observedAtMs: now };
    if (!mayAcquire(lease, this.opts.identity, this.#seen, now)) return false;
    const ours = lease.spec?.holderIdentity === this.opts.identity;
    const acquiredMs = ours && lease.spec?.acquireTime ? Date.parse(lease.spec.acquireTime) : now;
    const transitions = (lease.spec?.leaseTransitions ?? 0) + (ours ? 0 : 1);
    try {
      const written = await this.#write({ ...lease, spec: this.#spec(acquiredMs, now, transitions) });
      this.#seen = { record: leaseRecord(written), observedAtMs: now };
      return true;
    } catch (err) {
      if (err instanceof KubeError && err.status === 409) return false;
      throw err;
    }
  }

  #spec(acquiredMs: number, nowMs: number, transitions: number): LeaseObject["spec"] {
    return {
      holderIdentity: this.opts.identity,
      leaseDurationSeconds: this.#durationS,
      acquireTime: microTime(acquiredMs),
      renewTime: microTime(nowMs),
      leaseTransitions: transitions,
    };
  }

  /** PUT with the resourceVersion we read: 409 when someone wrote in between. */
  #write(lease: LeaseObject): Promise<LeaseObject> {
    return this.client.request<LeaseObject>("PUT", resourcePath(this.#ref()), {
      body: lease,
      query: { fieldManager: "faas-leader-election" },
    });
  }
}
