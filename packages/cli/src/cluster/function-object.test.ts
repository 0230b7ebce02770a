import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readFunctions } from "../commands/deploy.js";
import { CliError } from "../exit-codes.js";
import { type ClusterFunction, type Condition, functionObject, readiness, statusWord } from "./function-object.js";

const dir = mkdtempSync(join(tmpdir(), "faas-fnobj-"));

describe("functionObject: what `faas deploy` applies", () => {
  it("from flags: the spec the flags say, with the code file's text, in the target namespace", async () => {
    const code = join(dir, "greet.py");
    writeFileSync(code, 'def handle(req):\n    return "hi"\n');
    const [fn] = await readFunctions({
      file: [],
      name: "greet",
      runtime: "python",
      code,
      handler: "main.handle",
      min: 1,
      max: 4,
      env: ["GREETING=hi"],
    });
    const obj = functionObject(fn!.resource, "team-a");
    expect(obj).toMatchObject({
      apiVersion: "faas.example.com/v1",
      kind: "Function",
      metadata: { name: "greet", namespace: "team-a" },
      spec: {
        runtime: "python",
        handler: "main.handle",
        code: 'def handle(req):\n    return "hi"\n',
        minReplicas: 1,
        maxReplicas: 4,
        env: [{ name: "GREETING", value: "hi" }],
      },
    });
    expect(Object.keys(obj.metadata)).toEqual(["name", "namespace"]);
  });

  it("from YAML: codeFile is read beside the file and sent inline", async () => {
    writeFileSync(join(dir, "echo.py"), "def handle(req):\n    return req.text\n");
    const yaml = join(dir, "fn.yaml");
    writeFileSync(
      yaml,
      "apiVersion: faas.example.com/v1\nkind: Function\nmetadata:\n  name: echo\nspec:\n  runtime: python\n  codeFile: echo.py\n  maxReplicas: 2\n",
    );
    const [fn] = await readFunctions({ file: [yaml], env: [] });
    const obj = functionObject(fn!.resource, "default");
    expect(obj.spec.code).toBe("def handle(req):\n    return req.text\n");
    expect(obj.spec.codeFile).toBeUndefined();
    expect(obj.spec.maxReplicas).toBe(2);
  });

  it("refuses a bad spec before anything is sent, naming the flag (exit 2)", async () => {
    const code = join(dir, "x.py");
    writeFileSync(code, "def handle(req): pass\n");
    const err = await readFunctions({ file: [], name: "x", runtime: "python", code, min: 3, max: 1, env: [] }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CliError);
    expect((err as CliError).exitCode).toBe(2);
    expect((err as CliError).message).toMatch(/--max \(spec\.maxReplicas\)/);
  });
});

const cond = (type: string, status: Condition["status"], reason: string, message = reason): Condition => ({
  type,
  status,
  reason,
  message,
});

function fnWith(generation: number, observed: number | undefined, conditions: Condition[]): ClusterFunction {
  return {
    metadata: { name: "f", generation },
    spec: {},
    ...(observed === undefined ? {} : { status: { observedGeneration: observed, conditions } }),
  };
}

describe("readiness: when `faas deploy` stops waiting", () => {
  it.each([
    { name: "no status yet", given: fnWith(1, undefined, []), want: "waiting" },
    {
      name: "an older generation's Ready",
      given: fnWith(2, 1, [cond("Ready", "True", "Available"), cond("Progressing", "False", "RolloutComplete")]),
      want: "waiting",
    },
    {
      name: "scaled to zero",
      given: fnWith(1, 1, [cond("Ready", "True", "ScaledToZero"), cond("Progressing", "False", "ScaledToZero")]),
      want: "ready",
    },
    {
      name: "rolled out",
      given: fnWith(3, 3, [cond("Ready", "True", "Available"), cond("Progressing", "False", "RolloutComplete")]),
      want: "ready",
    },
    {
      name: "old pods serve while the new ones roll out",
      given: fnWith(3, 3, [cond("Ready", "True", "Available"), cond("Progressing", "True", "RollingOut")]),
      want: "waiting",
    },
    {
      name: "the first pod is starting",
      given: fnWith(1, 1, [cond("Ready", "False", "Progressing"), cond("Progressing", "True", "RollingOut")]),
      want: "waiting",
    },
    {
      name: "code that crashes on load",
      given: fnWith(1, 1, [
        cond("Ready", "False", "CrashLoop", "pod p: runner restarted 2 times"),
        cond("Progressing", "False", "CrashLoop"),
      ]),
      want: "failed",
    },
    {
      name: "an update that crash-loops while the old version still serves",
      given: fnWith(2, 2, [cond("Ready", "True", "Available"), cond("Progressing", "False", "CrashLoop", "bad")]),
      want: "failed",
    },
  ])("$name → $want", ({ given, want }) => {
    expect(readiness(given).state).toBe(want);
  });

  it("a failure carries the operator's reason and message", () => {
    const r = readiness(
      fnWith(1, 1, [cond("Ready", "False", "ImagePullFailed", "pod p: ErrImagePull: no such image")]),
    );
    expect(r).toEqual({ state: "failed", reason: "ImagePullFailed", message: "pod p: ErrImagePull: no such image" });
    expect(statusWord(fnWith(1, 1, [cond("Ready", "False", "ImagePullFailed")]))).toBe("ImagePullFailed");
    expect(statusWord(fnWith(1, undefined, []))).toBe("Pending");
  });
});
