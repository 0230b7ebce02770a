/**
 * The Function spec: the one source of truth for what a function is. The local
 * store, the gateway, the operator and the CRD's OpenAPI schema all come from
 * `FunctionSchema`.
 */
import { z } from "zod";
import { FaasError } from "./errors.js";
import { FUNCTION_API_VERSION, FUNCTION_KIND, RUNTIMES, type Runtime } from "./names.js";

/** DNS-1123 label short enough that `fn-<name>-deploy` stays ≤ 63 characters. */
export const NAME_PATTERN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
export const MAX_NAME_LENGTH = 53;
/** A ConfigMap holds at most 1 MiB; leave room for the rest of the object. */
export const MAX_CODE_BYTES = 512 * 1024;
const HANDLER_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_$][A-Za-z0-9_$]*$/;
const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;

export const SPEC_DEFAULTS = {
  handler: "main.handle",
  minReplicas: 0,
  maxReplicas: 5,
  concurrency: 10,
  timeoutSeconds: 30,
  idleSeconds: 60,
  targetCPUUtilization: 50,
  auth: "none",
} as const;

/** `none`: anyone who reaches the gateway may invoke; `apiKey`: a key made for this function is required. */
export const AUTH_MODES = ["none", "apiKey"] as const;
export type AuthMode = (typeof AUTH_MODES)[number];

export const FunctionSpecSchema = z
  .object({
    runtime: z.enum(RUNTIMES).describe("Language runtime: python (3.11) or nodejs (20)."),
    code: z
      .string()
      .min(1, "must not be empty")
      .refine((s) => Buffer.byteLength(s) <= MAX_CODE_BYTES, `must be at most ${MAX_CODE_BYTES} bytes`)
      .describe("Inline source of the function's module."),
    handler: z
      .string()
      .regex(HANDLER_PATTERN, 'must be "<module>.<function>", e.g. "main.handle"')
      .default(SPEC_DEFAULTS.handler)
      .describe("<module>.<function> to call for each request."),
    minReplicas: z.int().min(0).max(100).default(SPEC_DEFAULTS.minReplicas).describe("0 enables scale-to-zero."),
    maxReplicas: z.int().min(1).max(100).default(SPEC_DEFAULTS.maxReplicas),
    concurrency: z
      .int()
      .min(1)
      .max(1000)
      .default(SPEC_DEFAULTS.concurrency)
      .describe("Requests one replica serves at once; more wait in the gateway."),
    timeoutSeconds: z.int().min(1).max(900).default(SPEC_DEFAULTS.timeoutSeconds),
    idleSeconds: z
      .int()
      .min(1)
      .max(86400)
      .default(SPEC_DEFAULTS.idleSeconds)
      .describe("Seconds without requests before scaling to minReplicas (scale-to-zero window)."),
    targetCPUUtilization: z
      .int()
      .min(1)
      .max(100)
      .default(SPEC_DEFAULTS.targetCPUUtilization)
      .describe("HPA CPU target, percent of the request."),
    env: z
      .record(z.string().regex(ENV_NAME_PATTERN, "must be a valid environment variable name"), z.string())
      .default({})
      .describe("Environment variables for the function."),
    auth: z
      .enum(AUTH_MODES)
      .default(SPEC_DEFAULTS.auth)
      .describe("Who may invoke: none (anyone) or apiKey (a key created with `faas keys create`)."),
  })
  .strict();

export const FunctionMetadataSchema = z
  .object({
    name: z
      .string()
      .max(MAX_NAME_LENGTH, `must be at most ${MAX_NAME_LENGTH} characters`)
      .regex(NAME_PATTERN, "must be lowercase letters, digits and '-', starting and ending with a letter or digit"),
    namespace: z.string().optional(),
    labels: z.record(z.string(), z.string()).optional(),
    annotations: z.record(z.string(), z.string()).optional(),
  })
  .loose();

export const FunctionSchema = z
  .object({
    apiVersion: z.literal(FUNCTION_API_VERSION),
    kind: z.literal(FUNCTION_KIND),
    metadata: FunctionMetadataSchema,
    spec: FunctionSpecSchema,
  })
  .superRefine((fn, ctx) => {
    for (const issue of crossFieldIssues(fn.spec)) ctx.addIssue({ code: "custom", ...issue });
  });

export type FunctionSpec = z.output<typeof FunctionSpecSchema>;
export type FunctionSpecInput = z.input<typeof FunctionSpecSchema>;
export type FunctionResource = z.output<typeof FunctionSchema>;

/** Rules between fields; the CRD carries the same ones as CEL (see `CEL_RULES`). */
export function crossFieldIssues(spec: FunctionSpec): { path: (string | number)[]; message: string }[] {
  const issues: { path: (string | number)[]; message: string }[] = [];
  if (spec.maxReplicas < spec.minReplicas) {
    issues.push({
      path: ["spec", "maxReplicas"],
      message: `must be >= spec.minReplicas (got maxReplicas ${spec.maxReplicas} < minReplicas ${spec.minReplicas})`,
    });
  }
  for (const key of Object.keys(spec.env)) {
    if (key.startsWith("FAAS_")) {
      issues.push({ path: ["spec", "env", key], message: "names starting with FAAS_ are reserved for the platform" });
    }
  }
  return issues;
}

export const CEL_RULES = [
  {
    rule: "self.maxReplicas >= self.minReplicas",
    message: "spec.maxReplicas must be >= spec.minReplicas",
    fieldPath: ".maxReplicas",
  },
  {
    rule: "!has(self.env) || self.env.all(k, !k.startsWith('FAAS_'))",
    message: "spec.env: names starting with FAAS_ are reserved for the platform",
    fieldPath: ".env",
  },
] as const;

/** Formats zod issues as `field.path: what is wrong` lines. */
export function formatIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.map((i) => {
    const path = i.path.map(String).join(".") || "(root)";
    if (i.code === "invalid_value" && "values" in i && Array.isArray(i.values)) {
      return `${path}: must be one of ${i.values.map((v) => JSON.stringify(v)).join(", ")}`;
    }
    if (i.code === "invalid_type" && i.message.includes("received undefined")) return `${path}: is required`;
    if (i.code === "unrecognized_keys" && "keys" in i) {
      return `${path === "(root)" ? "" : `${path}: `}unknown field(s) ${i.keys.join(", ")}`.replace(
        /^unknown/,
        "unknown",
      );
    }
    return `${path}: ${i.message}`;
  });
}

/**
 * Validates and defaults a Function object. Throws `INVALID_SPEC` with one line
 * per problem, each naming the field.
 */
export function parseFunction(input: unknown, source?: string): FunctionResource {
  const result = FunctionSchema.safeParse(input);
  if (result.success) return result.data;
  const lines = formatIssues(result.error.issues);
  const where = source ? ` in ${source}` : "";
  throw new FaasError("INVALID_SPEC", `invalid Function${where}:\n  ${lines.join("\n  ")}`, {
    details: { issues: lines },
  });
}

export function makeFunction(name: string, spec: FunctionSpecInput): FunctionResource {
  return parseFunction({ apiVersion: FUNCTION_API_VERSION, kind: FUNCTION_KIND, metadata: { name }, spec });
}

export type { Runtime };
