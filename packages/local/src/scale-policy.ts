/**
 * The local backend's scaling policy, as a pure function of what it sees: keep
 * minReplicas, scale an idle function in to minReplicas, and remove one extra
 * replica at a time once the load has needed fewer for `scaleInDelayMs`.
 */

export interface ScaleInput {
  /** Replicas routed now, and replicas being started. */
  ready: number;
  pending: number;
  minReplicas: number;
  concurrency: number;
  idleSeconds: number;
  /** Requests in flight and parked, from the gateway. */
  inFlight: number;
  queued: number;
  /** Time since the last request or scale-up. */
  idleMs: number;
  /** How long there have been more replicas than the load needs (undefined: not so). */
  excessMs: number | undefined;
  scaleInDelayMs: number;
}

export type ScaleAction =
  /** Start replicas up to minReplicas. */
  | "fill"
  /** Idle: retire every replica above minReplicas. */
  | "scale-to-min"
  /** Retire the least-loaded replica. */
  | "remove-one"
  | "hold";

export interface ScaleDecision {
  action: ScaleAction;
  /** Whether there are more replicas than needed after this decision (starts or keeps the excess clock). */
  excess: boolean;
}

export function decideScale(s: ScaleInput): ScaleDecision {
  if (s.ready + s.pending < s.minReplicas) return { action: "fill", excess: false };
  if (s.pending > 0 || s.ready <= s.minReplicas) return { action: "hold", excess: false };
  if (s.inFlight === 0 && s.queued === 0 && s.idleMs >= s.idleSeconds * 1000) {
    return { action: "scale-to-min", excess: false };
  }
  const needed = Math.max(s.minReplicas, 1, Math.ceil((s.inFlight + s.queued) / s.concurrency));
  if (s.ready <= needed) return { action: "hold", excess: false };
  if (s.excessMs !== undefined && s.excessMs >= s.scaleInDelayMs) return { action: "remove-one", excess: true };
  return { action: "hold", excess: true };
}
