/**
 * The most recent request latencies of one function, for a cheap exact p50 in
 * `faas list` (Prometheus histograms stay the source for dashboards).
 */
export class LatencyWindow {
  readonly #values: Float64Array;
  #next = 0;
  #count = 0;

  constructor(size = 1024) {
    this.#values = new Float64Array(size);
  }

  record(ms: number): void {
    this.#values[this.#next] = ms;
    this.#next = (this.#next + 1) % this.#values.length;
    if (this.#count < this.#values.length) this.#count++;
  }

  /** The q-quantile (0..1) of the window, or undefined when empty. */
  quantile(q: number): number | undefined {
    if (this.#count === 0) return undefined;
    const sorted = this.#values.slice(0, this.#count).sort();
    return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  }
}
