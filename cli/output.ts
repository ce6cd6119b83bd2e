/**
 * Terminal output helpers shared by the subcommands: colour only when the stream is a TTY and
 * `NO_COLOR` is unset or empty (https://no-color.org), JSON printing, and a progress line.
 * No dependency: the few SGR codes used are written here.
 * @module
 */

export interface Stream {
  readonly isTTY?: boolean;
  write(text: string): unknown;
}

/** Whether to colour what goes to `stream`. */
export function colorEnabled(
  stream: { readonly isTTY?: boolean } = process.stdout,
  env: Readonly<Record<string, string | undefined>> = process.env,
): boolean {
  return stream.isTTY === true && (env.NO_COLOR === undefined || env.NO_COLOR === "");
}

export type Paint = (text: string) => string;

export interface Colors {
  readonly enabled: boolean;
  readonly bold: Paint;
  readonly dim: Paint;
  readonly red: Paint;
  readonly green: Paint;
  readonly yellow: Paint;
  readonly cyan: Paint;
  /** Reverse video: marks the current hour in grids. */
  readonly inverse: Paint;
}

const sgr =
  (open: number, close: number): Paint =>
  (text) =>
    `\x1b[${open}m${text}\x1b[${close}m`;
const plain: Paint = (text) => text;

/** Colour functions, or identity functions when colour is off. */
export function colors(enabled: boolean = colorEnabled()): Colors {
  if (!enabled) {
    return {
      enabled,
      bold: plain,
      dim: plain,
      red: plain,
      green: plain,
      yellow: plain,
      cyan: plain,
      inverse: plain,
    };
  }
  return {
    enabled,
    bold: sgr(1, 22),
    dim: sgr(2, 22),
    red: sgr(31, 39),
    green: sgr(32, 39),
    yellow: sgr(33, 39),
    cyan: sgr(36, 39),
    inverse: sgr(7, 27),
  };
}

/** Prints a value as indented JSON plus a newline. */
export function printJson(value: unknown, stream: Stream = process.stdout): void {
  stream.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** `1234567` → `1,234,567`. */
export function formatCount(n: number): string {
  return n.toLocaleString("en-US");
}

/** Bytes as a short human size: `512 B`, `1.5 KiB`, `12.0 MiB`. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}

/**
 * A single self-overwriting progress line on a TTY (nothing otherwise). Shown only once
 * `minBytes` have arrived, redrawn at most every `intervalMs`; `done()` erases it.
 */
export function progressLine(
  stream: Stream = process.stderr,
  options: { minBytes?: number; intervalMs?: number; label?: string } = {},
): { update: (received: number, total: number | null) => void; done: () => void } {
  const minBytes = options.minBytes ?? 1024 * 1024;
  const intervalMs = options.intervalMs ?? 100;
  const label = options.label ?? "fetching";
  let shown = false;
  let last = 0;
  if (stream.isTTY !== true) return { update: () => {}, done: () => {} };
  return {
    update(received, total) {
      if (received < minBytes) return;
      const now = performance.now();
      if (shown && now - last < intervalMs) return;
      last = now;
      shown = true;
      const of = total === null ? "" : ` of ${formatBytes(total)} (${Math.floor((received / total) * 100)}%)`;
      stream.write(`\r\x1b[2K${label} ${formatBytes(received)}${of}`);
    },
    done() {
      if (shown) stream.write("\r\x1b[2K");
      shown = false;
    },
  };
}

/**
 * Untrusted text made safe to print on a terminal: JSON-quoted, with every character outside
 * printable ASCII escaped (no control sequences, no bidi overrides).
 */
export function quoted(text: string): string {
  return JSON.stringify(text).replace(
    /[^\x20-\x7e]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/**
 * `label items...` folded to `width` columns; continuation lines are indented under the
 * first item. `label` may contain colour codes: `labelWidth` is its visible width.
 */
export function wrapList(label: string, labelWidth: number, items: readonly string[], width = 100): string {
  const indent = " ".repeat(labelWidth + 1);
  const lines: string[] = [];
  let line = label;
  let used = labelWidth;
  for (const item of items.length === 0 ? ["none"] : items) {
    if (used + 1 + item.length > width && used > labelWidth) {
      lines.push(line);
      line = indent.slice(0, -1);
      used = labelWidth;
    }
    line += ` ${item}`;
    used += 1 + item.length;
  }
  lines.push(line);
  return lines.join("\n");
}
