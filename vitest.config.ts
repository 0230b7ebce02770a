import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["packages/*/src/**/*.test.ts", "test/local/**/*.test.ts", "test/apiserver/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Real processes and ports: keep the 2-core machine from thrashing.
    maxWorkers: 2,
  },
});
