/**
 * Kubernetes resource quantities (`500m`, `1.5`, `256Mi`, `1e3`): parsed to a
 * number so the spec validator and the operator can compare requests with
 * limits. The forms are the API server's; the canonical string is kept as given.
 */

/** `<number><suffix>` with the suffixes Kubernetes accepts; no sign (a resource is never negative). */
export const QUANTITY_PATTERN = /^(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|[eE][-+]?\d+)?$/;

const SUFFIX: Record<string, number> = {
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  "": 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** A quantity as written in YAML: `cpu: 1` arrives as a number. */
export type QuantityInput = string | number;

/** The value of a quantity, or undefined when it is not one. */
export function parseQuantity(q: QuantityInput): number | undefined {
  const text = typeof q === "number" ? String(q) : q;
  const m = QUANTITY_PATTERN.exec(text);
  if (m === null) return undefined;
  const number = Number(m[1]);
  const suffix = m[3] ?? "";
  if (suffix.startsWith("e") || suffix.startsWith("E")) return number * 10 ** Number(suffix.slice(1));
  const factor = SUFFIX[suffix];
  return factor === undefined ? undefined : number * factor;
}

/** The string form the Kubernetes API wants. */
export function quantityString(q: QuantityInput): string {
  return typeof q === "number" ? String(q) : q;
}
