/**
 * Imported by each handler worker while the runner is generic: the first
 * import of a file module starts node's ESM file loader (~4 ms), which would
 * otherwise land on a cold start.
 */
export const warm = true;
