import picocolors from "picocolors";
import { describe, expect, it } from "vitest";
import { formatTable } from "../ui.js";
import type { ClusterFunction } from "./function-object.js";
import { addGatewayMetrics, type FunctionFigures, p50Ms } from "./gateway-figures.js";
import { LIST_HEADER, listRows, summarize } from "./list.js";

const plain = picocolors.createColors(false);

const hello: ClusterFunction = {
  metadata: { name: "hello", generation: 1 },
  spec: { runtime: "python", minReplicas: 0, maxReplicas: 3 },
  status: {
    observedGeneration: 1,
    replicas: 1,
    readyReplicas: 1,
    url: "http://faas-gateway.faas-system:8000/invoke/hello",
    conditions: [
      { type: "Ready", status: "True", reason: "Available", message: "1 of 1 replicas ready" },
      { type: "Progressing", status: "False", reason: "RolloutComplete", message: "1 of 1 replicas ready" },
    ],
  },
};
const broken: ClusterFunction = {
  metadata: { name: "broken", generation: 2 },
  spec: { runtime: "nodejs", minReplicas: 1, maxReplicas: 5 },
  status: {
    observedGeneration: 2,
    replicas: 1,
    readyReplicas: 0,
    url: "http://faas-gateway.faas-system:8000/invoke/broken",
    conditions: [{ type: "Ready", status: "False", reason: "CrashLoop", message: "pod b: CrashLoopBackOff" }],
  },
};

/** Two gateways' /metrics, as prom-client prints them. */
const GATEWAY_A = `# HELP faas_cold_starts_total Cold episodes
# TYPE faas_cold_starts_total counter
faas_cold_starts_total{function="hello"} 2
faas_request_duration_seconds_bucket{function="hello",le="0.001"} 0
faas_request_duration_seconds_bucket{function="hello",le="0.0025"} 4
faas_request_duration_seconds_bucket{function="hello",le="0.005"} 6
faas_request_duration_seconds_bucket{function="hello",le="+Inf"} 8
faas_request_duration_seconds_sum{function="hello"} 0.5
faas_requests_total{function="hello",code="200"} 8
`;
const GATEWAY_B = `faas_cold_starts_total{function="hello"} 1
faas_request_duration_seconds_bucket{function="hello",le="0.001"} 0
faas_request_duration_seconds_bucket{function="hello",le="0.0025"} 0
faas_request_duration_seconds_bucket{function="hello",le="0.005"} 2
faas_request_duration_seconds_bucket{function="hello",le="+Inf"} 2
`;

describe("gateway figures", () => {
  it("sums cold starts and latency buckets over every gateway", () => {
    const figures = new Map<string, FunctionFigures>();
    addGatewayMetrics(GATEWAY_A, figures);
    addGatewayMetrics(GATEWAY_B, figures);
    const f = figures.get("hello");
    expect(f?.coldStarts).toBe(3);
    expect([...(f?.buckets ?? [])]).toEqual([
      [0.001, 0],
      [0.0025, 4],
      [0.005, 8],
      [Number.POSITIVE_INFINITY, 10],
    ]);
    // 10 requests: the 5th lies in (2.5 ms, 5 ms], 1 of the 4 there → 2.5 + 2.5 × 1/4.
    expect(p50Ms(f?.buckets ?? new Map())).toBeCloseTo(3.125, 6);
  });

  it("has no p50 without requests, and reports the last bound when the median is past it", () => {
    expect(p50Ms(new Map([[Number.POSITIVE_INFINITY, 0]]))).toBeNull();
    expect(
      p50Ms(
        new Map([
          [1, 1],
          [Number.POSITIVE_INFINITY, 5],
        ]),
      ),
    ).toBe(1000);
  });
});

describe("faas list on a cluster", () => {
  it("prints local mode's columns plus STATUS, from Function objects and the gateways' figures", () => {
    const figures = addGatewayMetrics(GATEWAY_A, new Map());
    const keys = new Map([["broken", 1]]);
    const items = [
      summarize(hello, figures, "default", keys),
      summarize({ ...broken, spec: { ...broken.spec, auth: "apiKey" } }, figures, "default", keys),
    ];
    expect(formatTable(LIST_HEADER, listRows(items, plain), plain)).toBe(
      [
        "NAME    RUNTIME  READY  MIN/MAX  STATUS     COLD-STARTS  P50    AUTH            URL",
        "hello   python   1/1    0/3      Available  2            2.5ms  none            http://faas-gateway.faas-system:8000/invoke/hello",
        "broken  nodejs   0/1    1/5      CrashLoop  0            -      apiKey (1 key)  http://faas-gateway.faas-system:8000/invoke/broken",
      ].join("\n"),
    );
    expect(items[1]).toMatchObject({ status: "CrashLoop", message: "pod b: CrashLoopBackOff", coldStarts: 0 });
  });

  it("shows '-' for the gateway's figures when they could not be read", () => {
    const [row] = listRows([summarize(hello, undefined)], plain);
    expect(row?.slice(5, 7)).toEqual(["-", "-"]);
  });
});

describe("functions outside the gateway's default namespace (ADR 0015)", () => {
  it("are keyed <namespace>/<name> on the gateway: figures and invoke paths", async () => {
    const { gatewayKey, invokePath } = await import("./gateway-figures.js");
    expect(gatewayKey("default", "hello")).toBe("hello");
    expect(gatewayKey("team-a", "hello")).toBe("team-a/hello");
    expect(invokePath("default", "hello")).toBe("/invoke/hello");
    expect(invokePath("team-a", "hello")).toBe("/invoke/team-a/hello");
    const figures = addGatewayMetrics('faas_cold_starts_total{function="team-a/hello"} 7\n', new Map());
    expect(summarize(hello, figures, "team-a").coldStarts).toBe(7);
    expect(summarize(hello, figures, "default").coldStarts).toBe(0);
  });
});

describe("the gateway pod's metrics port", () => {
  it("is the container port named metrics, else the prometheus.io/port annotation, else 8000", async () => {
    const { metricsPort } = await import("./gateway-figures.js");
    const named = {
      metadata: { name: "g" },
      spec: {
        containers: [
          {
            ports: [
              { name: "http", containerPort: 8000 },
              { name: "metrics", containerPort: 9090 },
            ],
          },
        ],
      },
    };
    expect(metricsPort(named)).toBe(9090);
    expect(metricsPort({ metadata: { name: "g", annotations: { "prometheus.io/port": "9191" } } })).toBe(9191);
    expect(metricsPort({ metadata: { name: "g" }, spec: { containers: [{}] } })).toBe(8000);
  });
});
