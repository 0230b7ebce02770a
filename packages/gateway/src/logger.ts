/** Structured JSON logs; components take a child logger, never a global. */
import { type Logger, pino } from "pino";

export type { Logger };

export function createLogger(level: string, name: string, destination?: NodeJS.WritableStream): Logger {
  return pino({ name, level, base: { pid: process.pid } }, destination ?? process.stderr);
}
