import { defineConfig } from "vitest/config";

// Tests on the local single-node cluster (npm run cluster -- up). One file at a
// time: they share one node with 2 cores, and pods take seconds to start.
export default defineConfig({
  test: {
    include: ["test/cluster/**/*.test.ts"],
    testTimeout: 300_000,
    hookTimeout: 300_000,
    maxWorkers: 1,
    fileParallelism: false,
    reporters: ["default", "json"],
    outputFile: { json: ".faas/test-cluster-results.json" },
  },
});
