/**
 * Availability windows in UTC hours. Pure.
 *
 * `start <= hour < end`; `start > end` wraps past midnight (22→3 is 22:00–02:59);
 * `end` 0 or 24 means until 23:59:59; `start == end` means all day.
 * @module
 */

/** Whether an ad with this window runs during the UTC hour `hour` (0–23). */
export function isAvailable(start: number, end: number, hour: number): boolean {
  const stop = end === 0 ? 24 : end;
  if (start === stop) return true;
  if (start < stop) return start <= hour && hour < stop;
  return hour >= start || hour < stop;
}

/** The UTC hour (0–23) of an epoch time in milliseconds. */
export function utcHour(epochMs: number): number {
  return Math.floor(epochMs / 3_600_000) % 24;
}

/** A 24-bit mask of the hours the window covers (bit h set = available at hour h). */
export function hourMask(start: number, end: number): number {
  let mask = 0;
  for (let h = 0; h < 24; h++) if (isAvailable(start, end, h)) mask |= 1 << h;
  return mask;
}
