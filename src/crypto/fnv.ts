/**
 * FNV-1a (32-bit) over UTF-16 code units: a fast hash for the project's own hash tables (the
 * served counters' keys, the catalog's duplicate-id search). Not cryptographic: a table keyed by
 * it must stay linear when an input collides on purpose.
 * @module
 */

export const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/**
 * The state after hashing `s`'s code units from state `h` (a 32-bit integer, signed as
 * `Math.imul` leaves it): chain calls over several strings, then `>>> 0` for the hash.
 */
export function fnv1a(s: string, h: number = FNV_OFFSET): number {
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), FNV_PRIME);
  return h;
}

/** The state after one byte `b` (a separator between chained strings). */
export function fnv1aByte(b: number, h: number): number {
  return Math.imul(h ^ b, FNV_PRIME);
}
