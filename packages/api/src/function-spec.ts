/**
 * The Function spec: the one source of truth for what a function is. The local
 * store, the gateway, the operator and the CRD's OpenAPI schema all come from
 * `FunctionSchema`.
 */
import { z } from "zod";
import { FaasError } from "./errors.js";
import { FUNCTION_API_VERSION, FUNCTION_KIND, RUNTIMES, type Runtime } from "./names.js";
import { parseQuantity } from "./quantity.js";

/** DNS-1123 label short enough that `fn-<name>-deploy` stays ≤ 63 characters. */
export const NAME_PATTERN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
export const MAX_NAME_LENGTH = 53;
/** A ConfigMap holds at most 1 MiB; leave room for the rest of the object. */
export const MAX_CODE_BYTES = 512 * 1024;
const HANDLER_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_$][A-Za-z0-9_$]*$/;
const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Names of Secrets and ConfigMaps: DNS-1123 subdomains. */
export const OBJECT_NAME_PATTERN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** Keys of a Secret's or ConfigMap's data. */
export const DATA_KEY_PATTERN = /^[-._a-zA-Z0-9]+$/;
const MOUNT_PATH_PATTERN = /^(\/[A-Za-z0-9_][-A-Za-z0-9._]*)+$/;
export const MAX_ENV = 100;
export const MAX_ENV_FROM = 16;
export const MAX_SECRET_MOUNTS = 16;
/** The runner's own paths (code, scratch, pool state) and the system's: a mount may not cover them. */
const RESERVED_MOUNT_PATHS = ["/code", "/tmp", "/var/run/faas", "/proc", "/sys", "/dev"];
const SYSTEM_PATHS = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/var", "/run", "/app", "/home", "/root"];

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

const objectName = (what: string) =>
  z
    .string()
    .max(253)
    .regex(OBJECT_NAME_PATTERN, `must be the name of a ${what}: lowercase letters, digits, '-' and '.'`);
const dataKey = z.string().max(253).regex(DATA_KEY_PATTERN, "must be letters, digits, '-', '_' or '.'");
const KeyRefSchema = (what: string) => z.object({ name: objectName(what), key: dataKey }).strict();

export const EnvVarSchema = z
  .object({
    name: z.string().max(256).regex(ENV_NAME_PATTERN, "must be a valid environment variable name"),
    value: z.string().max(MAX_CODE_BYTES).optional(),
    valueFrom: z
      .object({
        secretKeyRef: KeyRefSchema("Secret").optional().describe("A key of a Secret in the function's namespace."),
        configMapKeyRef: KeyRefSchema("ConfigMap")
          .optional()
          .describe("A key of a ConfigMap in the function's namespace."),
      })
      .strict()
      .optional(),
  })
  .strict();

export const EnvFromSchema = z
  .object({
    secretRef: z
      .object({ name: objectName("Secret") })
      .strict()
      .optional(),
    configMapRef: z
      .object({ name: objectName("ConfigMap") })
      .strict()
      .optional(),
  })
  .strict();

export const SecretMountSchema = z
  .object({
    name: objectName("Secret").describe("The Secret whose keys become files."),
    mountPath: z
      .string()
      .max(256)
      .regex(MOUNT_PATH_PATTERN, 'must be an absolute path like "/etc/secrets/db"')
      .describe("Directory the keys appear in, read-only, one file per key."),
  })
  .strict();

const quantity = z
  .union([z.string().max(64), z.number()])
  .refine((q) => parseQuantity(q) !== undefined, 'must be a Kubernetes quantity, e.g. "250m", "1", "128Mi", "1Gi"');
const ResourceAmountsSchema = z.object({ cpu: quantity.optional(), memory: quantity.optional() }).strict();
export const ResourcesSchema = z
  .object({ requests: ResourceAmountsSchema.optional(), limits: ResourceAmountsSchema.optional() })
  .strict();
/** `none`: anyone who reaches the gateway may invoke; `apiKey`: a key made for this function is required. */
export const AUTH_MODES = ["none", "apiKey"] as const;
export type AuthMode = (typeof AUTH_MODES)[number];

/** An OCI manifest digest. */
export const DIGEST_PATTERN = /^sha256:[a-f0-9]{64}$/;
/** `http://host[:port]` or `https://host[:port]`, nothing after it. */
const REGISTRY_PATTERN = /^https?:\/\/[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:[0-9]{1,5})?$/;
/** An OCI repository name (distribution-spec): lowercase path components. */
const REPOSITORY_PATTERN = /^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$/;

export const PackageSchema = z
  .object({
    digest: z
      .string()
      .regex(DIGEST_PATTERN, 'must be "sha256:" and 64 lowercase hex digits')
      .describe("Digest of the package's OCI manifest (docs/packages.md)."),
    registry: z
      .string()
      .max(253)
      .regex(REGISTRY_PATTERN, 'must be "http://host[:port]" or "https://host[:port]"')
      .optional()
      .describe("Registry the runners pull the package from; absent in local mode."),
    repository: z
      .string()
      .max(255)
      .regex(REPOSITORY_PATTERN, 'must be an OCI repository name, e.g. "default/hello"')
      .optional()
      .describe("Repository of the package in the registry."),
  })
  .strict();

export const FunctionSpecSchema = z
  .object({
    runtime: z.enum(RUNTIMES).describe("Language runtime: python (3.11) or nodejs (20)."),
    code: z
      .string()
      .min(1, "must not be empty")
      .refine((s) => Buffer.byteLength(s) <= MAX_CODE_BYTES, `must be at most ${MAX_CODE_BYTES} bytes`)
      .optional()
      .describe("Inline source of the function's module (or give package)."),
    package: PackageSchema.optional().describe(
      "A built package (a directory with its dependencies), built and pushed by `faas deploy`.",
    ),
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
      .array(EnvVarSchema)
      .max(MAX_ENV)
      .default([])
      .describe("Environment variables: each a value, or a key of a Secret or ConfigMap (valueFrom)."),
    envFrom: z
      .array(EnvFromSchema)
      .max(MAX_ENV_FROM)
      .optional()
      .describe("Every key of a Secret (secretRef) or ConfigMap (configMapRef) as an environment variable."),
    secrets: z
      .array(SecretMountSchema)
      .max(MAX_SECRET_MOUNTS)
      .optional()
      .describe("Secrets mounted read-only as files, one per key."),
    resources: ResourcesSchema.optional().describe(
      "CPU and memory requests and limits of each replica (Kubernetes quantities); the operator's defaults fill what is unset.",
    ),
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
/** What a caller may write: `env` also as the older map of names to values. */
export type FunctionSpecInput = Omit<z.input<typeof FunctionSpecSchema>, "env"> & {
  env?: z.input<typeof FunctionSpecSchema>["env"] | Record<string, string>;
};
export type PackageRef = z.output<typeof PackageSchema>;
export type EnvVar = z.output<typeof EnvVarSchema>;
export type FunctionResource = z.output<typeof FunctionSchema>;

/** Rules between fields; the CRD carries the same ones as CEL (see `CEL_RULES`). */
export function crossFieldIssues(spec: FunctionSpec): { path: (string | number)[]; message: string }[] {
  const issues: { path: (string | number)[]; message: string }[] = [];
  if (notExactlyOne(spec.code, spec.package)) {
    issues.push({
      path: ["spec", spec.code === undefined ? "code" : "package"],
      message:
        spec.code === undefined
          ? "is required (or spec.package, or spec.codeFile in a YAML file)"
          : "give spec.code or spec.package, not both",
    });
  }
  if (spec.package !== undefined && (spec.package.registry === undefined) !== (spec.package.repository === undefined)) {
    issues.push({ path: ["spec", "package"], message: "registry and repository go together: give both or neither" });
  }
  if (spec.maxReplicas < spec.minReplicas) {
    issues.push({
      path: ["spec", "maxReplicas"],
      message: `must be >= spec.minReplicas (got maxReplicas ${spec.maxReplicas} < minReplicas ${spec.minReplicas})`,
    });
  }
  const seen = new Set<string>();
  spec.env.forEach((e, i) => {
    const at = ["spec", "env", i];
    if (e.name.startsWith("FAAS_")) {
      issues.push({
        path: [...at, "name"],
        message: `${e.name}: names starting with FAAS_ are reserved for the platform`,
      });
    }
    if (seen.has(e.name)) issues.push({ path: [...at, "name"], message: `${e.name} is set twice` });
    seen.add(e.name);
    if ((e.value === undefined) === (e.valueFrom === undefined)) {
      issues.push({ path: at, message: `${e.name}: needs exactly one of value and valueFrom` });
    } else if (e.valueFrom !== undefined && notExactlyOne(e.valueFrom.secretKeyRef, e.valueFrom.configMapKeyRef)) {
      issues.push({ path: [...at, "valueFrom"], message: "needs exactly one of secretKeyRef and configMapKeyRef" });
    }
  });
  (spec.envFrom ?? []).forEach((e, i) => {
    if (notExactlyOne(e.secretRef, e.configMapRef)) {
      issues.push({ path: ["spec", "envFrom", i], message: "needs exactly one of secretRef and configMapRef" });
    }
  });
  const mounts = spec.secrets ?? [];
  mounts.forEach((m, i) => {
    const problem = mountPathProblem(
      m.mountPath,
      mounts.slice(0, i).map((o) => o.mountPath),
    );
    if (problem !== undefined) issues.push({ path: ["spec", "secrets", i, "mountPath"], message: problem });
  });
  for (const kind of ["cpu", "memory"] as const) {
    const request = spec.resources?.requests?.[kind];
    const limit = spec.resources?.limits?.[kind];
    if (request === undefined || limit === undefined) continue;
    if ((parseQuantity(request) ?? 0) > (parseQuantity(limit) ?? Infinity)) {
      issues.push({
        path: ["spec", "resources", "requests", kind],
        message: `must be <= spec.resources.limits.${kind} (got request ${request} > limit ${limit})`,
      });
    }
  }
  return issues;
}

/** True when both or neither of the two are set. */
function notExactlyOne(a: unknown, b: unknown): boolean {
  return (a === undefined) === (b === undefined);
}

const within = (path: string, dir: string): boolean => path === dir || path.startsWith(`${dir}/`);

function mountPathProblem(path: string, earlier: readonly string[]): string | undefined {
  if (path.split("/").some((seg) => seg === "." || seg === "..")) return "must not contain '.' or '..' segments";
  const reserved = RESERVED_MOUNT_PATHS.find((r) => within(path, r) || within(r, path));
  if (reserved !== undefined) return `${path} would cover ${reserved}, which the runner needs`;
  const system = SYSTEM_PATHS.find((r) => within(r, path));
  if (system !== undefined) return `${path} would hide ${system}; mount below it (e.g. ${system}/secrets/…)`;
  const overlap = earlier.find((o) => within(path, o) || within(o, path));
  if (overlap !== undefined) return `${path} overlaps the mount at ${overlap}`;
  return undefined;
}

export const CEL_RULES = [
  {
    rule: "self.maxReplicas >= self.minReplicas",
    message: "spec.maxReplicas must be >= spec.minReplicas",
    fieldPath: ".maxReplicas",
  },
  {
    rule: "has(self.code) != has(self.__package__)",
    message: "spec: give exactly one of code and package",
    fieldPath: ".code",
  },
  {
    rule: "!has(self.env) || self.env.all(e, !e.name.startsWith('FAAS_'))",
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
  const result = FunctionSchema.safeParse(withEnvList(input));
  if (result.success) return result.data;
  const lines = formatIssues(result.error.issues);
  const where = source ? ` in ${source}` : "";
  throw new FaasError("INVALID_SPEC", `invalid Function${where}:\n  ${lines.join("\n  ")}`, {
    details: { issues: lines },
  });
}

/**
 * `spec.env` used to be a map of names to values; that form is still read
 * (older YAML, functions stored by earlier versions) and becomes the list.
 */
function withEnvList(input: unknown): unknown {
  if (!isRecord(input) || !isRecord(input.spec)) return input;
  const env = input.spec.env;
  if (!isRecord(env)) return input;
  return { ...input, spec: { ...input.spec, env: Object.entries(env).map(([name, value]) => ({ name, value })) } };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function makeFunction(name: string, spec: FunctionSpecInput): FunctionResource {
  return parseFunction({ apiVersion: FUNCTION_API_VERSION, kind: FUNCTION_KIND, metadata: { name }, spec });
}

export type { Runtime };
