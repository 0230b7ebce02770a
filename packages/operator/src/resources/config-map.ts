/**
 * ConfigMap `fn-<name>-code-<code hash>`: the code file and `function.json`,
 * mounted at /code. One per version of the code, immutable; the reconciler
 * deletes old ones once no pod of an older version is left.
 */
import { CODE_MOUNT_PATH, codeFileName, codeHash, configMapName, LOAD_SPEC_FILE, toLoadSpec } from "@faas/api";
import type { V1ConfigMap } from "@kubernetes/client-node";
import { childMetadata, type FunctionObject } from "./labels.js";

export function buildConfigMap(fn: FunctionObject): V1ConfigMap {
  // The code lives once, in its own file; the runner reads it beside function.json.
  const { code: _code, ...loadSpec } = toLoadSpec(fn);
  return {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: {
      ...childMetadata(fn, configMapName(fn.metadata.name, codeHash(toLoadSpec(fn)))),
      annotations: { "faas.example.com/mount-path": CODE_MOUNT_PATH },
    },
    immutable: true,
    data: {
      // A packaged function has no code file: function.json names the package the runner pulls.
      ...(fn.spec.code === undefined ? {} : { [codeFileName(fn.spec.runtime, fn.spec.handler)]: fn.spec.code }),
      [LOAD_SPEC_FILE]: `${JSON.stringify(loadSpec, null, 2)}\n`,
    },
  };
}
