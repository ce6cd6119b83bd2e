/**
 * The serving snapshot: the validated ads in columns (see table.ts), indexed by (country,
 * language, hour), with the answer of every (country, language, hour) built once. Built off to
 * the side and swapped in whole (see sync/holder.ts).
 * @module
 */
import { hourMask } from "../decision/hours.ts";
import { type AdColumns, AdTable, packSteps } from "./table.ts";
import type { Ad } from "./types.ts";
import { runChunked, runSync } from "./validate.ts";

/**
 * The ads of one bucket live at one hour, as the decision returns them: built once with the
 * index, so a decision allocates nothing (an object per call measured +70 % per decision on a
 * 1M-ad heap, where each young collection costs more).
 */
export interface Live {
  readonly kind: "ads";
  /** The bucket's rotation counter in `Snapshot.rotation`. */
  readonly slot: number;
  /** Non-empty: the ads' numbers in `Snapshot.ads`, in catalog order. */
  readonly ads: Int32Array;
}

/** All the ads of one (country, language), by UTC hour, in catalog order. */
export interface Bucket {
  /** Position of this bucket's rotation counter in `Snapshot.rotation`. */
  readonly slot: number;
  /** By hour: the ads' numbers (empty when none runs then). */
  readonly hours: readonly Int32Array[];
  /** By hour: the live ads, or null when none runs then. */
  readonly live: readonly (Live | null)[];
}

export interface Snapshot {
  /** Content hash of the accepted catalog (hex SHA-256 prefix of its packed ads: `versionSteps`). */
  readonly version: string;
  readonly loadedAt: number;
  readonly ads: AdTable;
  /** country → lang → bucket. */
  readonly index: ReadonlyMap<string, ReadonlyMap<string, Bucket>>;
  /**
   * Round-robin counters, one per bucket: the one mutable part of a snapshot, advanced by the
   * request handler (never by the decision functions). A new snapshot starts its counters at 0.
   */
  readonly rotation: Uint32Array;
}

/**
 * The index as plain data (typed arrays and strings), as built; `snapshotOf` turns it into the
 * maps and `Live` objects a decision reads.
 */
export interface IndexData {
  /** Bucket b's country and language at 2b and 2b+1, in first-seen catalog order. */
  readonly keys: readonly string[];
  /** The ad numbers of every distinct hour list, one list after another. */
  readonly pool: Int32Array;
  /** Bucket b's list at hour h: start at 2(24b+h) in `pool`, length at 2(24b+h)+1 (0 = none). */
  readonly ranges: Uint32Array;
}

/** Bytes of a column hashed per step of `versionSteps`. */
const HASH_PIECE = 1 << 20;

/**
 * The version of packed ads: SHA-256 of the columns (the code tables and sizes as JSON, then the
 * per-ad columns and the text chunks as they are), so two documents with the same valid ads in
 * the same order share a version. Hashing the columns, not a line of text per ad, takes one pass
 * over about 110 MB of arrays for 1M ads instead of a million strings built and collected
 * (docs/performance.md, "Tenth session"). Run on the columns as `packSteps` returns them (texts
 * as strings), wherever they are built, so every path gives the same version.
 */
export function* versionSteps(columns: AdColumns): Generator<void, string> {
  const hasher = new Bun.CryptoHasher("sha256");
  const { count, countries, langs, mimes, texts, extra } = columns;
  hasher.update(
    JSON.stringify({
      count,
      countries,
      langs,
      mimes,
      texts: texts.map((t) => t.length),
      extra: extra !== null,
    }),
  );
  for (const column of [columns.country, columns.lang, columns.hours, columns.pos, extra]) {
    if (column === null) continue;
    // A MiB at a time: on the serving thread (a build without the worker) each piece is a step.
    const bytes = new Uint8Array(column.buffer, column.byteOffset, column.byteLength);
    for (let at = 0; at < bytes.byteLength; at += HASH_PIECE) {
      hasher.update(bytes.subarray(at, at + HASH_PIECE));
      yield;
    }
  }
  for (const text of texts) {
    hasher.update(text);
    yield;
  }
  return hasher.digest("hex").slice(0, 16);
}

/** Hash of the canonical ads: two documents with the same valid ads share a version. */
export function catalogVersion(ads: readonly Ad[]): string {
  return runSync(versionSteps(runSync(packSteps(ads))));
}

/** Ads indexed per step (between two possible pauses of a chunked build). */
const STEP = 256;

export function* indexSteps(columns: AdColumns): Generator<void, IndexData> {
  const { count, country, lang, hours } = columns;
  // Bucket of each ad (first-seen order) and its hour mask.
  const bucketOf = new Map<number, number>(); // country code << 16 | lang code → bucket
  const keys: string[] = [];
  const adBucket = new Uint32Array(count);
  const adMask = new Uint32Array(count);
  const masks = new Map<number, number>(); // start * 25 + end → mask
  for (let i = 0; i < count; i++) {
    const key = ((country[i] as number) << 16) | (lang[i] as number);
    let b = bucketOf.get(key);
    if (b === undefined) {
      b = bucketOf.size;
      bucketOf.set(key, b);
      keys.push(
        columns.countries[country[i] as number] as string,
        columns.langs[lang[i] as number] as string,
      );
    }
    adBucket[i] = b;
    const start = hours[2 * i] as number;
    const end = hours[2 * i + 1] as number;
    const window = start * 25 + end;
    let mask = masks.get(window);
    if (mask === undefined) {
      mask = hourMask(start, end);
      masks.set(window, mask);
    }
    adMask[i] = mask;
    if (i % STEP === STEP - 1) yield;
  }
  const buckets = bucketOf.size;
  // Each (bucket, hour) list sized first, then one pass writes each ad into the hours it runs
  // in: catalog order kept, no array growth.
  const sizes = new Uint32Array(24 * buckets);
  for (let i = 0; i < count; i++) {
    let m = adMask[i] as number;
    const base = 24 * (adBucket[i] as number);
    while (m !== 0) {
      const low = m & -m;
      const h = 31 - Math.clz32(low);
      sizes[base + h] = (sizes[base + h] as number) + 1;
      m ^= low;
    }
    if (i % STEP === STEP - 1) yield;
  }
  const starts = new Uint32Array(24 * buckets);
  let total = 0;
  for (let k = 0; k < sizes.length; k++) {
    starts[k] = total;
    total += sizes[k] as number;
  }
  const pool = new Int32Array(total);
  const fill = starts.slice();
  for (let i = 0; i < count; i++) {
    let m = adMask[i] as number;
    const base = 24 * (adBucket[i] as number);
    while (m !== 0) {
      const low = m & -m;
      const k = base + 31 - Math.clz32(low);
      const at = fill[k] as number;
      pool[at] = i;
      fill[k] = at + 1;
      m ^= low;
    }
    if (i % STEP === STEP - 1) yield;
  }
  // Hours with identical lists (very common: all-day ads) share the first one's range, and the
  // pool is compacted in place to the lists kept: a kept list moves left, to `used`, which never
  // passes the start of a list not yet looked at; earlier lists are read where they now are.
  const ranges = new Uint32Array(2 * 24 * buckets);
  let used = 0;
  for (let b = 0; b < buckets; b++) {
    for (let h = 0; h < 24; h++) {
      const k = 24 * b + h;
      const size = sizes[k] as number;
      let shared = -1;
      for (let j = 24 * b; j < k && size > 0; j++) {
        if (sizes[j] === size && sameList(pool, ranges[2 * j] as number, starts[k] as number, size)) {
          shared = j;
          break;
        }
      }
      if (shared >= 0) {
        ranges[2 * k] = ranges[2 * shared] as number;
      } else {
        pool.copyWithin(used, starts[k] as number, (starts[k] as number) + size);
        ranges[2 * k] = used;
        used += size;
      }
      ranges[2 * k + 1] = size;
    }
    yield;
  }
  return { keys, pool: pool.slice(0, used), ranges };
}

function sameList(pool: Int32Array, a: number, b: number, size: number): boolean {
  for (let i = 0; i < size; i++) if (pool[a + i] !== pool[b + i]) return false;
  return true;
}

const EMPTY = new Int32Array(0);

/** The snapshot of packed ads and their index: maps and shared `Live` objects, built once. */
export function snapshotOf(ads: AdTable, data: IndexData, version: string, loadedAt: number): Snapshot {
  const index = new Map<string, Map<string, Bucket>>();
  const buckets = data.keys.length / 2;
  for (let b = 0; b < buckets; b++) {
    const country = data.keys[2 * b] as string;
    const lang = data.keys[2 * b + 1] as string;
    const hours: Int32Array[] = [];
    const live: (Live | null)[] = [];
    // Hours that share a list (the same range) share its array and its Live too.
    const byStart = new Map<number, Live>();
    for (let h = 0; h < 24; h++) {
      const k = 24 * b + h;
      const start = data.ranges[2 * k] as number;
      const size = data.ranges[2 * k + 1] as number;
      if (size === 0) {
        hours.push(EMPTY);
        live.push(null);
        continue;
      }
      let shared = byStart.get(start);
      if (shared === undefined) {
        shared = { kind: "ads", slot: b, ads: data.pool.subarray(start, start + size) };
        byStart.set(start, shared);
      }
      hours.push(shared.ads);
      live.push(shared);
    }
    let byLang = index.get(country);
    if (byLang === undefined) {
      byLang = new Map();
      index.set(country, byLang);
    }
    byLang.set(lang, { slot: b, hours, live });
  }
  return { version, loadedAt, ads, index, rotation: new Uint32Array(buckets) };
}

/** Every ad of a bucket, in catalog order: the union of its hour lists (each ad runs some hour). */
export function bucketAds(bucket: Bucket): number[] {
  const seen = new Set<number>();
  for (const list of new Set(bucket.hours)) for (const i of list) seen.add(i);
  return [...seen].sort((a, b) => a - b);
}

function* snapshotSteps(columns: AdColumns, version: string, loadedAt: number): Generator<void, Snapshot> {
  const data = yield* indexSteps(columns);
  return snapshotOf(new AdTable(columns), data, version, loadedAt);
}

/**
 * Builds the packed ads and their index. Ads sharing a (country, language) and the same set of
 * hours share one list, so memory follows the number of distinct hour patterns, not ads × 24.
 */
export function buildSnapshot(ads: readonly Ad[], loadedAt: number): Snapshot {
  const columns = runSync(packSteps(ads));
  return runSync(snapshotSteps(columns, runSync(versionSteps(columns)), loadedAt));
}

/**
 * The packed ads and their version, in slices of about `sliceMs`, awaiting `pause()` between
 * slices, so a server keeps answering while a big catalog is packed and hashed. The caller can
 * compare the version with the live one before paying for the index (`buildSnapshotChunked`).
 */
export async function versionChunked(
  ads: readonly Ad[],
  pause: () => Promise<void>,
  sliceMs = 4,
): Promise<{ readonly columns: AdColumns; readonly version: string }> {
  const columns = await runChunked(packSteps(ads), pause, sliceMs);
  return { columns, version: await runChunked(versionSteps(columns), pause, sliceMs) };
}

/** `buildSnapshot` in slices (see `versionChunked`), for columns packed and hashed beforehand. */
export function buildSnapshotChunked(
  columns: AdColumns,
  version: string,
  loadedAt: number,
  pause: () => Promise<void>,
  sliceMs = 4,
): Promise<Snapshot> {
  return runChunked(snapshotSteps(columns, version, loadedAt), pause, sliceMs);
}
