/**
 * The `functions.faas.example.com` CustomResourceDefinition, generated from the
 * same zod schema the CLI and gateways validate with. `crd.yaml` at the
 * repository root is this object; a test keeps the two equal.
 */
import {
  API_GROUP,
  API_VERSION,
  CEL_RULES,
  FUNCTION_KIND,
  FUNCTION_PLURAL,
  FunctionSpecSchema,
  MAX_CODE_BYTES,
  MAX_NAME_LENGTH,
  NAME_PATTERN,
  QUANTITY_PATTERN,
} from "@faas/api";
import { stringify } from "yaml";
import { z } from "zod";

type Schema = Record<string, unknown>;

/** Structural-schema clean-up of zod's OpenAPI output. */
function structural(schema: Schema): Schema {
  const { $schema: _drop, additionalProperties, ...rest } = schema;
  const out: Schema = { ...rest };
  if (additionalProperties !== undefined && additionalProperties !== false) {
    out.additionalProperties = structural(additionalProperties as Schema);
  }
  if (rest.items !== undefined) out.items = structural(rest.items as Schema);
  if (rest.properties !== undefined) {
    out.properties = Object.fromEntries(
      Object.entries(rest.properties as Record<string, Schema>).map(([k, v]) => [k, structural(v)]),
    );
  }
  return out;
}

/** What the API server says to a Function that still has spec.codeFile (kubectl apply of a CLI file). */
const CODE_FILE_MESSAGE =
  "spec.codeFile is read only by `faas deploy -f`, which puts the file's source into spec.code; kubectl cannot read files: deploy this file with `faas deploy -f`, or put the source in spec.code";

export function functionSpecOpenApi(): Schema {
  const spec = structural(z.toJSONSchema(FunctionSpecSchema, { target: "openapi-3.0", io: "input" }) as Schema);
  const props = spec.properties as Record<string, Schema>;
  // A ConfigMap holds at most 1 MiB; the byte limit is checked client-side, characters here.
  (props.code as Schema).maxLength = MAX_CODE_BYTES;
  // No server-side defaults for auth and env: the API server would write them into every Function,
  // and gateways and operators built before a field (or its list form) existed refuse it. Absent is
  // none, and no variables.
  delete (props.auth as Schema).default;
  const env = props.env as Schema;
  delete env.default;
  // One entry per name (the API server refuses duplicates; apply merges by name).
  env["x-kubernetes-list-type"] = "map";
  env["x-kubernetes-list-map-keys"] = ["name"];
  const envItem = env.items as Schema;
  envItem["x-kubernetes-validations"] = [
    { rule: "has(self.value) != has(self.valueFrom)", message: "needs exactly one of value and valueFrom" },
  ];
  ((envItem.properties as Record<string, Schema>).valueFrom as Schema)["x-kubernetes-validations"] = [
    {
      rule: "has(self.secretKeyRef) != has(self.configMapKeyRef)",
      message: "needs exactly one of secretKeyRef and configMapKeyRef",
    },
  ];
  ((props.envFrom as Schema).items as Schema)["x-kubernetes-validations"] = [
    {
      rule: "has(self.secretRef) != has(self.configMapRef)",
      message: "needs exactly one of secretRef and configMapRef",
    },
  ];
  props.resources = resourcesOpenApi((props.resources as Schema).description as string);
  // A YAML file for `faas deploy -f` may name its code file; the CLI inlines it as spec.code. Known
  // here only to be refused with what to do, rather than as kubectl's "unknown field".
  props.codeFile = {
    type: "string",
    description: "Read by `faas deploy -f` only, which puts the file's source into spec.code; never stored.",
  };
  spec["x-kubernetes-validations"] = [
    {
      rule: "!has(self.codeFile)",
      message: CODE_FILE_MESSAGE,
      fieldPath: ".codeFile",
    },
    ...CEL_RULES.map((r) => ({
      rule: r.rule,
      message: r.message,
      fieldPath: r.fieldPath,
    })),
  ];
  return spec;
}

/** Quantities as Kubernetes writes them: an integer or a string (`cpu: 1`, `memory: 128Mi`). */
const quantitySchema: Schema = {
  "x-kubernetes-int-or-string": true,
  anyOf: [{ type: "integer" }, { type: "string" }],
  pattern: QUANTITY_PATTERN.source,
};

function resourcesOpenApi(description: string): Schema {
  const amounts: Schema = {
    type: "object",
    properties: { cpu: quantitySchema, memory: quantitySchema },
  };
  const notAbove = (r: string) =>
    `!has(self.requests) || !has(self.limits) || !has(self.requests.${r}) || !has(self.limits.${r}) || ` +
    `quantity(string(self.requests.${r})).compareTo(quantity(string(self.limits.${r}))) <= 0`;
  return {
    type: "object",
    description,
    properties: { requests: amounts, limits: amounts },
    "x-kubernetes-validations": ["cpu", "memory"].map((r) => ({
      rule: notAbove(r),
      message: `spec.resources.requests.${r} must be <= spec.resources.limits.${r}`,
      fieldPath: `.requests.${r}`,
    })),
  };
}

const condition: Schema = {
  type: "object",
  required: ["type", "status"],
  properties: {
    type: { type: "string" },
    status: { type: "string", enum: ["True", "False", "Unknown"] },
    reason: { type: "string" },
    message: { type: "string" },
    observedGeneration: { type: "integer" },
    lastTransitionTime: { type: "string", format: "date-time" },
  },
};

export const functionStatusOpenApi: Schema = {
  type: "object",
  properties: {
    observedGeneration: { type: "integer" },
    replicas: { type: "integer", description: "Replicas the Deployment wants." },
    readyReplicas: { type: "integer" },
    selector: { type: "string", description: "Label selector of the function's pods (scale subresource)." },
    url: { type: "string", description: "Where the gateway serves the function." },
    codeHash: { type: "string" },
    conditions: {
      type: "array",
      items: condition,
      "x-kubernetes-list-type": "map",
      "x-kubernetes-list-map-keys": ["type"],
    },
  },
};

export function buildFunctionCrd(): Schema {
  const fullName = `${FUNCTION_PLURAL}.${API_GROUP}`;
  const namePattern = NAME_PATTERN.source.replace(/\\/g, "\\\\");
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: fullName },
    spec: {
      group: API_GROUP,
      scope: "Namespaced",
      names: {
        kind: FUNCTION_KIND,
        listKind: `${FUNCTION_KIND}List`,
        plural: FUNCTION_PLURAL,
        singular: "function",
        shortNames: ["fn"],
      },
      versions: [
        {
          name: API_VERSION,
          served: true,
          storage: true,
          schema: {
            openAPIV3Schema: {
              type: "object",
              required: ["spec"],
              properties: {
                apiVersion: { type: "string" },
                kind: { type: "string" },
                metadata: { type: "object" },
                spec: functionSpecOpenApi(),
                status: functionStatusOpenApi,
              },
              "x-kubernetes-validations": [
                {
                  rule: `size(self.metadata.name) <= ${MAX_NAME_LENGTH} && self.metadata.name.matches('${namePattern}')`,
                  message: `metadata.name: must be at most ${MAX_NAME_LENGTH} lowercase letters, digits and '-', starting and ending with a letter or digit`,
                },
              ],
            },
          },
          subresources: {
            status: {},
            // `kubectl scale function X --replicas=N` sets the function's floor (minReplicas).
            scale: {
              specReplicasPath: ".spec.minReplicas",
              statusReplicasPath: ".status.replicas",
              labelSelectorPath: ".status.selector",
            },
          },
          additionalPrinterColumns: [
            { name: "Runtime", type: "string", jsonPath: ".spec.runtime" },
            { name: "Ready", type: "integer", jsonPath: ".status.readyReplicas" },
            { name: "Desired", type: "integer", jsonPath: ".status.replicas" },
            { name: "Min", type: "integer", jsonPath: ".spec.minReplicas" },
            { name: "Max", type: "integer", jsonPath: ".spec.maxReplicas" },
            { name: "Status", type: "string", jsonPath: '.status.conditions[?(@.type=="Ready")].reason' },
            { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
          ],
        },
      ],
    },
  };
}

export function functionCrdYaml(): string {
  return `# Generated from packages/api (the Function spec) by \`npm run gen:crd\`; do not edit.\n${stringify(buildFunctionCrd(), { lineWidth: 0 })}`;
}
