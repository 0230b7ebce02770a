/**
 * JSON-line logging: events on stdout, errors on stderr. Synchronous writes on
 * purpose: the runner logs rarely (start, specialize, failures), never per call.
 */
import { writeSync } from "node:fs";

export type LogFields = Record<string, unknown>;

export interface Logger {
  info(event: string, fields?: LogFields): void;
  error(event: string, fields?: LogFields): void;
}

function writeLine(fd: number, level: string, event: string, fields: LogFields | undefined): void {
  const line = JSON.stringify({ time: new Date().toISOString(), level, event, ...fields });
  try {
    writeSync(fd, `${line}\n`);
  } catch {
    // A closed pipe must not take the runner down.
  }
}

export function createLogger(base: LogFields = {}): Logger {
  return {
    info: (event, fields) => writeLine(1, "info", event, { ...base, ...fields }),
    error: (event, fields) => writeLine(2, "error", event, { ...base, ...fields }),
  };
}

/** The one line a supervisor waits for; its shape is fixed by docs/runner-protocol.md. */
export function printListening(port: number): void {
  writeSync(1, `${JSON.stringify({ event: "listening", port, pid: process.pid, runtime: "nodejs" })}\n`);
}
