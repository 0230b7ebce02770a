import { makeFunction } from "@faas/api";
import { describe, expect, it } from "vitest";
import { fitsPoolPod, type PodObject } from "./pool.js";

const pod = (limits: Record<string, string>): PodObject => ({
  metadata: { name: "faas-pool-python-x" },
  spec: { containers: [{ resources: { limits } }] },
});

describe("fitsPoolPod", () => {
  const poolPod = pod({ cpu: "1", memory: "256Mi" });
  const cases: { name: string; resources?: Parameters<typeof makeFunction>[1]["resources"]; want: boolean }[] = [
    { name: "no resources of its own", want: true },
    {
      name: "within the pod's limits",
      resources: { requests: { cpu: "100m" }, limits: { memory: "128Mi" } },
      want: true,
    },
    { name: "equal to them", resources: { limits: { cpu: 1, memory: "256Mi" } }, want: true },
    { name: "a memory limit above the pod's", resources: { limits: { memory: "1Gi" } }, want: false },
    { name: "a cpu request above the pod's limit", resources: { requests: { cpu: "1500m" } }, want: false },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const fn = makeFunction("f", { runtime: "python", code: "x", resources: c.resources });
      expect(fitsPoolPod(fn, poolPod)).toBe(c.want);
    });
  }
});
