/**
 * The ad decision: pure and synchronous. No clock, no I/O: the caller passes the hour and
 * the rotation tick.
 * @module
 */
import type { Live, Snapshot } from "../catalog/snapshot.ts";

/** Why no ad was chosen. */
export type NoFillReason = "no_ad_for_country_lang" | "outside_hours";

export type Eligible = Live | { readonly kind: "nofill"; readonly reason: NoFillReason };

const NO_AD: Eligible = Object.freeze({ kind: "nofill", reason: "no_ad_for_country_lang" });
const OUTSIDE: Eligible = Object.freeze({ kind: "nofill", reason: "outside_hours" });

/**
 * The ads eligible for a canonical (country, lang) at a UTC hour: an index lookup that
 * returns objects built with the index (no allocation).
 */
export function eligible(snapshot: Snapshot, country: string, lang: string, hour: number): Eligible {
  const bucket = snapshot.index.get(country)?.get(lang);
  if (bucket === undefined) return NO_AD;
  return bucket.live[hour] ?? OUTSIDE;
}

/** Round-robin: the `tick`-th request among `ads` (non-empty) gets this ad (its number). */
export function choose(ads: Int32Array, tick: number): number {
  return ads[tick % ads.length] as number;
}
