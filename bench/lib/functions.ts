/** The hello functions every benchmark row serves, one per runtime. */
import type { LoadSpec, Runtime } from "@faas/api";

export const HELLO_BODY = "hello from runner";

/** Source of a hello handler; `tag` makes each deployment's code distinct. */
export function helloCode(runtime: Runtime, tag = ""): string {
  const comment = tag === "" ? "" : `${runtime === "python" ? "#" : "//"} ${tag}\n`;
  return runtime === "python"
    ? `${comment}def handle(req):\n    return "${HELLO_BODY}"\n`
    : `${comment}export function handle(req) {\n  return "${HELLO_BODY}";\n}\n`;
}

export function helloLoadSpec(name: string, runtime: Runtime): LoadSpec {
  return { name, runtime, handler: "main.handle", code: helloCode(runtime), timeoutSeconds: 30, env: {} };
}
