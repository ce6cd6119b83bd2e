/**
 * The serving snapshot: the validated ads indexed by (country, language, hour), each ad's
 * response body prebuilt. Built off to the side and swapped in whole (see sync/holder.ts).
 * @module
 */
import { hourMask } from "../decision/hours.ts";
import type { Ad } from "./types.ts";

/** An ad as served: its id and its ready JSON body. */
export interface Entry {
  readonly id: string;
  readonly body: string;
}

/** All the ads of one (country, language), by UTC hour, in catalog order. */
export interface Bucket {
  /** Position of this bucket's rotation counter in `Snapshot.rotation`. */
  readonly slot: number;
  readonly hours: readonly (readonly Entry[])[];
}

export interface Snapshot {
  /** Content hash of the accepted catalog (hex SHA-256 prefix of the canonical ads). */
  readonly version: string;
  readonly loadedAt: number;
  readonly ads: readonly Ad[];
  /** country → lang → bucket. */
  readonly index: ReadonlyMap<string, ReadonlyMap<string, Bucket>>;
  /**
   * Round-robin counters, one per bucket: the one mutable part of a snapshot, advanced by the
   * request handler (never by the decision functions). A new snapshot starts its counters at 0.
   */
  readonly rotation: Uint32Array;
}

const NONE: readonly Entry[] = Object.freeze([]);

/** The body served for an ad. Only validated fields go in. */
export function adBody(ad: Ad): string {
  return JSON.stringify({ id: ad.id, video_url: ad.video_url });
}

/** Hash of the canonical ads: two documents with the same valid ads share a version. */
export function catalogVersion(ads: readonly Ad[]): string {
  const hasher = new Bun.CryptoHasher("sha256");
  for (const ad of ads) {
    hasher.update(`${ad.id}\t${ad.video_url}\t${ad.country}\t${ad.lang}\t${ad.start_hour}\t${ad.end_hour}\n`);
  }
  return hasher.digest("hex").slice(0, 16);
}

/**
 * Builds the index. Ads sharing a (country, language) and the same set of hours share one
 * entry list, so memory follows the number of distinct hour patterns, not ads × 24.
 */
export function buildSnapshot(ads: readonly Ad[], loadedAt: number): Snapshot {
  // Group by country, lang: remember each ad's hour mask, in catalog order.
  const groups = new Map<string, Map<string, { entries: Entry[]; masks: number[] }>>();
  for (const ad of ads) {
    let byLang = groups.get(ad.country);
    if (byLang === undefined) {
      byLang = new Map();
      groups.set(ad.country, byLang);
    }
    let group = byLang.get(ad.lang);
    if (group === undefined) {
      group = { entries: [], masks: [] };
      byLang.set(ad.lang, group);
    }
    group.entries.push({ id: ad.id, body: adBody(ad) });
    group.masks.push(hourMask(ad.start_hour, ad.end_hour));
  }

  const index = new Map<string, Map<string, Bucket>>();
  let slot = 0;
  for (const [country, byLang] of groups) {
    const buckets = new Map<string, Bucket>();
    for (const [lang, { entries, masks }] of byLang) {
      const hours: (readonly Entry[])[] = [];
      for (let h = 0; h < 24; h++) {
        const bit = 1 << h;
        const live: Entry[] = [];
        for (let i = 0; i < entries.length; i++)
          if ((masks[i] as number) & bit) live.push(entries[i] as Entry);
        hours.push(live.length === 0 ? NONE : live);
      }
      // Hours with identical lists (very common: all-day ads) share one array.
      for (let h = 1; h < 24; h++) {
        for (let k = 0; k < h; k++) {
          if (sameEntries(hours[h] as readonly Entry[], hours[k] as readonly Entry[])) {
            hours[h] = hours[k] as readonly Entry[];
            break;
          }
        }
      }
      buckets.set(lang, { slot: slot++, hours });
    }
    index.set(country, buckets);
  }
  return { version: catalogVersion(ads), loadedAt, ads, index, rotation: new Uint32Array(slot) };
}

function sameEntries(a: readonly Entry[], b: readonly Entry[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
