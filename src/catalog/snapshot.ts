/**
 * The serving snapshot: the validated ads indexed by (country, language, hour), with the answer
 * of every (country, language, hour) built once. Built off to the side and swapped in whole
 * (see sync/holder.ts).
 * @module
 */
import { hourMask } from "../decision/hours.ts";
import type { Ad } from "./types.ts";
import { runChunked, runSync } from "./validate.ts";

/** An ad as served. */
export interface Entry {
  readonly id: string;
  /** The validated ad (for the body, VAST rendering, frequency caps and stats). */
  readonly ad: Ad;
  /** Whether `id` and `video_url` go into JSON as they are (see `bodyHead`). */
  readonly plain: boolean;
}

/**
 * The ads of one bucket live at one hour, as the decision returns them: built once with the
 * index, so a decision allocates nothing (an object per call measured +70 % per decision on a
 * 1M-ad heap, where each young collection costs more).
 */
export interface Live {
  readonly kind: "ads";
  /** The bucket's rotation counter in `Snapshot.rotation`. */
  readonly slot: number;
  /** Non-empty, in catalog order. */
  readonly ads: readonly Entry[];
}

/** All the ads of one (country, language), by UTC hour, in catalog order. */
export interface Bucket {
  /** Position of this bucket's rotation counter in `Snapshot.rotation`. */
  readonly slot: number;
  readonly hours: readonly (readonly Entry[])[];
  /** By hour: the live ads, or null when none runs then. */
  readonly live: readonly (Live | null)[];
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

/** Printable ASCII without `"` and `\\`: JSON.stringify leaves such a string as it is. */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/** An entry for a validated ad. */
export function entryOf(ad: Ad): Entry {
  return { id: ad.id, ad, plain: PLAIN.test(ad.id) && PLAIN.test(ad.video_url) };
}

/**
 * The ad's JSON body without its closing `}`: `{"id":…,"video_url":…`, for the caller to append
 * members. Written per answer rather than stored: a million stored bodies cost 1M strings for
 * the garbage collector to mark and ~120 MB, and the answer is concatenated anyway. Same text as
 * `JSON.stringify({ id, video_url })`, without its cost for the usual plain strings.
 */
export function bodyHead(entry: Entry): string {
  if (entry.plain) return `{"id":"${entry.id}","video_url":"${entry.ad.video_url}"`;
  return JSON.stringify({ id: entry.id, video_url: entry.ad.video_url }).slice(0, -1);
}

/** The body served for an ad (without an impression URL). */
export function adBody(entry: Entry): string {
  return `${bodyHead(entry)}}`;
}

/** The optional fields in the version hash (empty for plain ads, so their versions are unchanged). */
function optionalPart(ad: Ad): string {
  if (
    ad.frequency_cap === undefined &&
    ad.frequency_window === undefined &&
    ad.duration === undefined &&
    ad.mime_type === undefined &&
    ad.width === undefined &&
    ad.height === undefined
  ) {
    return "";
  }
  return `\t${ad.frequency_cap ?? ""}\t${ad.frequency_window ?? ""}\t${ad.duration ?? ""}\t${ad.mime_type ?? ""}\t${ad.width ?? ""}\t${ad.height ?? ""}`;
}

/** "0" to "24": validated hours as text without a number-to-string conversion per ad. */
const HOUR_TEXT: readonly string[] = Array.from({ length: 25 }, (_, h) => String(h));

/** Lines hashed per `update` call: fewer native calls, same bytes. */
const HASH_BATCH = 256;

function* versionSteps(ads: readonly Ad[]): Generator<void, string> {
  const hasher = new Bun.CryptoHasher("sha256");
  let batch = "";
  for (let i = 0; i < ads.length; i++) {
    const ad = ads[i] as Ad;
    batch += `${ad.id}\t${ad.video_url}\t${ad.country}\t${ad.lang}\t${HOUR_TEXT[ad.start_hour]}\t${HOUR_TEXT[ad.end_hour]}${optionalPart(ad)}\n`;
    if (i % HASH_BATCH === HASH_BATCH - 1) {
      hasher.update(batch);
      batch = "";
      yield;
    }
  }
  if (batch !== "") hasher.update(batch);
  return hasher.digest("hex").slice(0, 16);
}

/** Hash of the canonical ads: two documents with the same valid ads share a version. */
export function catalogVersion(ads: readonly Ad[]): string {
  return runSync(versionSteps(ads));
}

/** Ads indexed per step (between two possible pauses of a chunked build). */
const STEP = 256;

function* indexSteps(ads: readonly Ad[], version: string, loadedAt: number): Generator<void, Snapshot> {
  // Group by country, lang: remember each ad's hour mask, in catalog order.
  const groups = new Map<string, Map<string, { entries: Entry[]; masks: number[] }>>();
  const masks = new Map<number, number>(); // start * 25 + end → mask
  for (let i = 0; i < ads.length; i++) {
    const ad = ads[i] as Ad;
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
    const window = ad.start_hour * 25 + ad.end_hour;
    let mask = masks.get(window);
    if (mask === undefined) {
      mask = hourMask(ad.start_hour, ad.end_hour);
      masks.set(window, mask);
    }
    group.entries.push(entryOf(ad));
    group.masks.push(mask);
    if (i % STEP === STEP - 1) yield;
  }

  const index = new Map<string, Map<string, Bucket>>();
  let slot = 0;
  for (const [country, byLang] of groups) {
    const buckets = new Map<string, Bucket>();
    for (const [lang, { entries, masks: entryMasks }] of byLang) {
      // Each hour's list sized first (from the few distinct masks), then one pass over the
      // entries writes each into the hours it runs in: catalog order kept, no array growth.
      const perMask = new Map<number, number>();
      for (const m of entryMasks) perMask.set(m, (perMask.get(m) ?? 0) + 1);
      const sizes = new Uint32Array(24);
      for (const [m, count] of perMask)
        for (let h = 0; h < 24; h++) if (m & (1 << h)) sizes[h] = (sizes[h] as number) + count;
      const lists: Entry[][] = Array.from(sizes, (size) => new Array<Entry>(size));
      const fill = new Uint32Array(24);
      for (let i = 0; i < entries.length; i++) {
        const entry = entries[i] as Entry;
        let m = entryMasks[i] as number;
        while (m !== 0) {
          const low = m & -m;
          const h = 31 - Math.clz32(low);
          const at = fill[h] as number;
          (lists[h] as Entry[])[at] = entry;
          fill[h] = at + 1;
          m ^= low;
        }
        if (i % STEP === STEP - 1) yield;
      }
      const hours: (readonly Entry[])[] = lists.map((live) => (live.length === 0 ? NONE : live));
      // Hours with identical lists (very common: all-day ads) share one array.
      for (let h = 1; h < 24; h++) {
        for (let k = 0; k < h; k++) {
          if (sameEntries(hours[h] as readonly Entry[], hours[k] as readonly Entry[])) {
            hours[h] = hours[k] as readonly Entry[];
            break;
          }
        }
      }
      const live = hours.map((list) =>
        list.length === 0 ? null : { kind: "ads" as const, slot, ads: list },
      );
      // Hours that share a list share its Live too.
      for (let h = 1; h < 24; h++) {
        const k = hours.indexOf(hours[h] as readonly Entry[]);
        if (k < h) live[h] = live[k] ?? null;
      }
      buckets.set(lang, { slot: slot++, hours, live });
      yield;
    }
    index.set(country, buckets);
  }
  return { version, loadedAt, ads, index, rotation: new Uint32Array(slot) };
}

/**
 * Builds the index. Ads sharing a (country, language) and the same set of hours share one
 * entry list, so memory follows the number of distinct hour patterns, not ads × 24.
 */
export function buildSnapshot(ads: readonly Ad[], loadedAt: number): Snapshot {
  return runSync(indexSteps(ads, catalogVersion(ads), loadedAt));
}

/**
 * The version of `ads`, and a function that builds their snapshot; both run in slices of about
 * `sliceMs`, awaiting `pause()` between slices, so a server keeps answering while a big catalog
 * is indexed. The caller can compare the version with the live one before paying for the index.
 */
export async function versionChunked(
  ads: readonly Ad[],
  pause: () => Promise<void>,
  sliceMs = 4,
): Promise<string> {
  return runChunked(versionSteps(ads), pause, sliceMs);
}

/** `buildSnapshot` in slices (see `versionChunked`), for a version computed beforehand. */
export function buildSnapshotChunked(
  ads: readonly Ad[],
  version: string,
  loadedAt: number,
  pause: () => Promise<void>,
  sliceMs = 4,
): Promise<Snapshot> {
  return runChunked(indexSteps(ads, version, loadedAt), pause, sliceMs);
}

function sameEntries(a: readonly Entry[], b: readonly Entry[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
