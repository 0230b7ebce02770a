/**
 * Structured JSON logs; components take a child logger, never a global.
 * Credentials are redacted wherever headers might be logged (ADR 0011).
 */
import { type Logger, pino } from "pino";

export type { Logger };

/** Paths pino censors: request headers that carry API keys or tokens, at any of the depths we log them. */
export const REDACTED_PATHS = [
  "headers.authorization",
  'headers["x-faas-key"]',
  "*.headers.authorization",
  '*.headers["x-faas-key"]',
  "key",
  "*.key",
];

export function createLogger(level: string, name: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    { name, level, base: { pid: process.pid }, redact: { paths: REDACTED_PATHS, censor: "[redacted]" } },
    destination ?? process.stderr,
  );
}
