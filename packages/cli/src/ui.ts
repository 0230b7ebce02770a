/**
 * Terminal output: colour only on a TTY (and never with NO_COLOR), spinners
 * only on an interactive stderr, errors as one red line plus a hint.
 */
import ora from "ora";
import picocolors from "picocolors";
import type { CliConfig } from "./config.js";
import type { CliError } from "./exit-codes.js";

export type Colors = ReturnType<typeof picocolors.createColors>;

export interface Spinner {
  /** Changes the text of a running spinner. */
  update(text: string): void;
  succeed(text: string): void;
  fail(text?: string): void;
  /** Removes the spinner without a trace. */
  stop(): void;
}

export interface Ui {
  readonly stdout: NodeJS.WriteStream;
  readonly stderr: NodeJS.WriteStream;
  /** Colours for text written to stdout. */
  readonly c: Colors;
  /** Colours for text written to stderr. */
  readonly ce: Colors;
  readonly stderrIsTty: boolean;
  /** Spinners draw (an interactive stderr with a known width); otherwise they are silent. */
  readonly canAnimate: boolean;
  out(line: string): void;
  /** Progress and notes: stderr, so stdout stays clean for scripts. */
  note(line: string): void;
  error(err: CliError): void;
  spinner(text: string, opts?: { quiet?: boolean }): Spinner;
}

export function createUi(
  cfg: CliConfig,
  stdout: NodeJS.WriteStream = process.stdout,
  stderr: NodeJS.WriteStream = process.stderr,
): Ui {
  const colorFor = (s: NodeJS.WriteStream): boolean =>
    cfg.color === "always" || (cfg.color === "auto" && s.isTTY === true);
  const c = picocolors.createColors(colorFor(stdout));
  const ce = picocolors.createColors(colorFor(stderr));
  const stderrIsTty = stderr.isTTY === true;
  // A pseudo-terminal without a size (columns 0) makes ora redraw an unbounded number of lines.
  const canAnimate = stderrIsTty && (stderr.columns ?? 0) > 0;
  return {
    stdout,
    stderr,
    c,
    ce,
    stderrIsTty,
    canAnimate,
    out: (line) => void stdout.write(`${line}\n`),
    note: (line) => void stderr.write(`${line}\n`),
    error(err) {
      stderr.write(`${ce.red(`error: ${err.message}`)}\n`);
      if (err.hint) stderr.write(`${ce.dim(`hint: ${err.hint}`)}\n`);
    },
    spinner(text, opts = {}) {
      if (!canAnimate || opts.quiet) return silentSpinner;
      const s = ora({ text, stream: stderr, discardStdin: false, color: colorFor(stderr) ? "cyan" : false }).start();
      return {
        update(t) {
          s.text = t;
        },
        succeed: (t) => void s.succeed(t),
        fail: (t) => void s.fail(t),
        stop: () => void s.stop(),
      };
    },
  };
}

const silentSpinner: Spinner = { update() {}, succeed() {}, fail() {}, stop() {} };

const ANSI_SGR = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g");

/** Left-aligned columns; ANSI codes in cells do not count toward widths. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[], c: Colors): string {
  const visible = (s: string): number => s.replace(ANSI_SGR, "").length;
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => visible(r[i] ?? ""))));
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell + " ".repeat((widths[i] ?? 0) - visible(cell))))
      .join("  ")
      .trimEnd();
  return [c.bold(line(header)), ...rows.map(line)].join("\n");
}
