/**
 * Fixed-width text helpers shared by the views. Pure.
 * @module
 */

/** `text` cut or padded to exactly `width` characters; a cut ends in `…`. */
export function fit(text: string, width: number): string {
  if (width <= 0) return "";
  if (text.length > width) return width === 1 ? "…" : `${text.slice(0, width - 1)}…`;
  return text.padEnd(width);
}

/** Labels over a 24-character hour bar: `0     6     12    18    `. */
export const HOUR_RULER = "0     6     12    18    ";

/** A caret under `hour` on a 24-character bar, with the hour spelled out. */
export function hourCaret(hour: number): string {
  return `${" ".repeat(hour)}^ ${String(hour).padStart(2, "0")}:00 UTC`;
}
