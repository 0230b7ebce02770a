#!/usr/bin/env node
// Writes crd.yaml from the Function spec (run after `tsc -b`).
import { writeFileSync } from "node:fs";
import { functionCrdYaml } from "@faas/kube";

writeFileSync(new URL("../crd.yaml", import.meta.url), functionCrdYaml());
console.log("wrote crd.yaml");
