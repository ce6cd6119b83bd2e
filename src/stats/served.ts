/**
 * Served-ad, no-fill and impression counters for `GET /stats` (issue 7). In memory, per process;
 * synchronous and allocation-free on the counting path once a key exists.
 *
 * Keys are (ad id, country, lang, UTC hour of day 0–23) for served ads and impressions, and
 * (country, lang, reason, hour) for no-fills. Impressions count in the hour of the *decision*
 * (from the token), so a show rate compares like with like. Counts are cumulative since the
 * process started; `drain()` hands out what was added since the previous drain (for a periodic
 * flush to Redis, where instances add up).
 *
 * Bounded: at most `maxKeys` served/impression rows (set it to catalog size × 24; `setMaxKeys`
 * when the catalog changes, `retain` to drop ads that left it) and `maxNoFillKeys` no-fill rows.
 * A count for a new key past the bound is not kept but added to `dropped`. Counting never
 * throws: an hour outside 0–23 is dropped too.
 *
 * Rates are `null` when their denominator is 0:
 * - `fill_rate` = served / requests, requests = served + no-fill. For one ad: the share of the
 *   requests for its country and language that this ad filled.
 * - `show_rate` = impressions / served (per process it can exceed 1 when another instance served).
 * @module
 */
import { fnv1a, fnv1aByte } from "../crypto/fnv.ts";

export interface StatsRow {
  readonly ad: string;
  readonly country: string;
  readonly lang: string;
  readonly hour: number;
  readonly served: number;
  readonly impressions: number;
}

export interface NoFillRow {
  readonly country: string;
  readonly lang: string;
  readonly reason: string;
  readonly hour: number;
  readonly count: number;
}

export interface Rates {
  readonly requests: number;
  readonly served: number;
  readonly impressions: number;
  readonly fill_rate: number | null;
  readonly show_rate: number | null;
}

export interface CountryStats extends Rates {
  readonly no_fill: number;
}

export interface Dropped {
  readonly served: number;
  readonly impressions: number;
  readonly no_fill: number;
}

/** The `GET /stats` body. */
export interface StatsSnapshot {
  readonly generated_at: string;
  readonly since: string;
  readonly totals: CountryStats;
  readonly by_ad: Readonly<Record<string, Rates>>;
  readonly by_country: Readonly<Record<string, CountryStats>>;
  readonly no_fill_by_reason: Readonly<Record<string, number>>;
  readonly rows: readonly StatsRow[];
  readonly no_fill_rows: readonly NoFillRow[];
  readonly dropped: Dropped;
  readonly limits: { readonly max_keys: number; readonly max_no_fill_keys: number };
}

/** What `drain()` returns: only keys whose counts grew, with the growth. */
export interface StatsDelta {
  readonly rows: readonly StatsRow[];
  readonly no_fill_rows: readonly NoFillRow[];
}

export interface ServedStatsOptions {
  /** Served/impression rows kept at most (default 262,144 = 10,922 ads × 24 hours). */
  readonly maxKeys?: number;
  /** No-fill rows kept at most (default 24,576). */
  readonly maxNoFillKeys?: number;
  /** When counting started (epoch ms), for `since`. */
  readonly startedAtMs: number;
}

/** What `servedAd` reads of a catalog's ads (an `AdTable`). */
export interface AdKeys {
  readonly length: number;
  id(ad: number): string;
  country(ad: number): string;
  lang(ad: number): string;
}

interface AdKeyCache {
  readonly ads: AdKeys;
  readonly keys: Int32Array;
  readonly generation: number;
}

export const DEFAULT_MAX_KEYS = 262_144;
export const DEFAULT_MAX_NO_FILL_KEYS = 24_576;
const INITIAL_CAPACITY = 256;

const HOURS = 24;
/** Code units of the `a` arena to begin with. */
const INITIAL_UNITS = 4096;
/** Code units turned into a string per `String.fromCharCode` call. */
const UNITS_PER_CALL = 4096;

/** FNV-1a over the UTF-16 code units of (a, b, c), 0xff between them: the bucket of a key. */
function hashOf(a: string, b: string, c: string): number {
  return fnv1a(c, fnv1aByte(0xff, fnv1a(b, fnv1aByte(0xff, fnv1a(a))))) >>> 0;
}

/** The string of `length` code units of `units` from `start`. */
function stringOf(units: Uint16Array, start: number, length: number): string {
  let out = "";
  for (let i = start; i < start + length; i += UNITS_PER_CALL) {
    const end = Math.min(i + UNITS_PER_CALL, start + length);
    out += String.fromCharCode.apply(null, units.subarray(i, end) as unknown as number[]);
  }
  return out;
}

function grown<T extends Int32Array | Uint32Array | Uint16Array | Uint8Array | Float64Array>(
  old: T,
  length: number,
  fill: number,
): T {
  const next = new (old.constructor as new (n: number) => T)(length);
  next.set(old);
  if (fill !== 0) next.fill(fill, old.length);
  return next;
}

/**
 * Counters keyed by (a, b, c, hour), `columns` numbers per row. A key (a, b, c) gets an index
 * whose 24 hour slots, chain link, hash and parts live in typed arrays: `a` (an ad id, many
 * distinct) as UTF-16 code units in an arena, `b` and `c` (country, language, reason: a few
 * hundred codes at most) as numbers of interned strings. Rows (slots) hold the counts. A key is
 * found through an open hash of buckets (typed arrays, chained through `#nextKey`). Freed keys
 * and slots (see `retain`) are reused, and `retain` compacts the arena.
 *
 * Built so that counting a new ad writes to nothing the collector must scan: no object or
 * string per key (a quarter of a million ids held as strings were cells every full collection
 * marked, and each id, a slice of its catalog's text, kept that text alive after a swap), no
 * per-key array, no Map but the interned codes. The first version (a Map of
 * key objects, one slot array) grew the heap by an object graph per ad served: with a 1M-ad
 * catalog, rotation reaches a new ad on nearly every request, and serving p99 at 25k req/s while
 * the table filled was 26 ms (median of 10 runs) against 8.3 ms with counting removed; 8.2 ms
 * with the second (1,024 Maps from `a` to its first key). With the snapshot in columns (fourth
 * session) those Maps were what was left: each young collection rescanned every Map written
 * since the last one, nearly all 1,024 of them at 20k new ads a second (docs/performance.md).
 */
class CounterTable {
  readonly columns: number;
  #maxKeys: number;
  /** First key of each hash bucket, -1 when empty; a power of two, at least twice the keys. */
  #buckets = new Int32Array(INITIAL_CAPACITY * 2).fill(-1);
  // Keys: `a` as code units in `#units` (from `#keyStart`, `#keyLength` long); `b` and `c` as
  // numbers of strings in `#atoms`, -1 for a free key.
  #units = new Uint16Array(INITIAL_UNITS);
  #unitsUsed = 0;
  #keyStart = new Uint32Array(0);
  #keyLength = new Uint32Array(0);
  #keyB = new Int32Array(0);
  #keyC = new Int32Array(0);
  readonly #atoms: string[] = [];
  readonly #atomOf = new Map<string, number>();
  /** Next key in the same bucket, or -1. */
  #nextKey = new Int32Array(0);
  #keyHash = new Uint32Array(0);
  /** Slot of each (key, hour), -1 when that hour has no row. */
  #keySlots = new Int32Array(0);
  #keyCapacity = 0;
  #keyHigh = 0;
  #freeKeys: number[] = [];
  // Rows.
  #capacity = 0;
  #used = 0;
  #high = 0;
  #free: number[] = [];
  #counts = new Float64Array(0);
  #drained = new Float64Array(0);
  /** Slot → key index, -1 when free. */
  #slotKey = new Int32Array(0);
  #slotHour = new Uint8Array(0);

  constructor(columns: number, maxKeys: number) {
    this.columns = columns;
    this.#maxKeys = maxKeys;
  }

  get maxKeys(): number {
    return this.#maxKeys;
  }

  /** Changes the bound; a new bound may let keys in that were refused, so `generation` moves. */
  set maxKeys(value: number) {
    if (value !== this.#maxKeys) this.generation++;
    this.#maxKeys = value;
  }

  get size(): number {
    return this.#used;
  }

  /**
   * Bumped whenever a key is released (`retain`) or the bound changes: key indexes and "table
   * full" answers remembered elsewhere (see `ServedStats.servedAd`) are valid while it is
   * unchanged. (Keys are only ever added otherwise, so a key refused as past the bound stays
   * refused until then.)
   */
  generation = 0;

  /** The row's slot, created on first use; -1 when the hour is invalid or the table is full. */
  slot(a: string, b: string, c: string, hour: number): number {
    if (!(hour >= 0 && hour < HOURS && (hour | 0) === hour)) return -1;
    const k = this.key(a, b, c);
    return k < 0 ? -1 : this.slotOfKey(k, hour);
  }

  /** The index of key (a, b, c), made on first use; -1 when it is new and the table is full. */
  key(a: string, b: string, c: string): number {
    const hash = hashOf(a, b, c);
    let k = this.#buckets[hash & (this.#buckets.length - 1)] as number;
    while (
      k >= 0 &&
      !(
        this.#keyHash[k] === hash &&
        this.#atoms[this.#keyB[k] as number] === b &&
        this.#atoms[this.#keyC[k] as number] === c &&
        this.#sameA(k, a)
      )
    )
      k = this.#nextKey[k] as number;
    if (k >= 0) return k;
    return this.#used >= this.#maxKeys ? -1 : this.#newKey(hash, a, b, c);
  }

  /** The slot of key `k` (in use) at `hour` (0-23), made on first use; -1 when the table is full. */
  slotOfKey(k: number, hour: number): number {
    const found = this.#keySlots[k * HOURS + hour] as number;
    if (found >= 0) return found;
    if (this.#used >= this.#maxKeys) return -1;
    const s = this.#allocate();
    this.#keySlots[k * HOURS + hour] = s;
    this.#slotKey[s] = k;
    this.#slotHour[s] = hour;
    return s;
  }

  add(slot: number, column: number, n: number): void {
    const i = slot * this.columns + column;
    this.#counts[i] = (this.#counts[i] as number) + n;
  }

  /** Visits every row in use with its cumulative counts (the buffer is reused between calls). */
  forEach(visit: (a: string, b: string, c: string, hour: number, counts: Float64Array) => void): void {
    const buf = new Float64Array(this.columns);
    for (let s = 0; s < this.#high; s++) {
      const k = this.#slotKey[s] as number;
      if (k < 0) continue;
      for (let col = 0; col < this.columns; col++) buf[col] = this.#counts[s * this.columns + col] as number;
      visit(this.#a(k), this.#b(k), this.#c(k), this.#slotHour[s] as number, buf);
    }
  }

  /** Visits rows that grew since the previous drain, with the growth, and marks them drained. */
  drain(visit: (a: string, b: string, c: string, hour: number, deltas: Float64Array) => void): void {
    const buf = new Float64Array(this.columns);
    for (let s = 0; s < this.#high; s++) {
      const k = this.#slotKey[s] as number;
      if (k < 0) continue;
      let grew = false;
      for (let col = 0; col < this.columns; col++) {
        const i = s * this.columns + col;
        const d = (this.#counts[i] as number) - (this.#drained[i] as number);
        buf[col] = d;
        if (d !== 0) grew = true;
        this.#drained[i] = this.#counts[i] as number;
      }
      if (grew) visit(this.#a(k), this.#b(k), this.#c(k), this.#slotHour[s] as number, buf);
    }
  }

  /** Removes every row whose `a` fails `keep`; their keys and slots are reused. */
  retain(keep: (a: string) => boolean): void {
    let released = false;
    for (let k = 0; k < this.#keyHigh; k++) {
      if (this.#keyB[k] === -1 || keep(this.#a(k))) continue;
      this.#releaseKey(k);
      released = true;
    }
    if (released) {
      this.#rehash(this.#buckets.length);
      this.#compact();
    }
  }

  /** Copies the `a` of every key in use into a new arena, without the freed ones' units. */
  #compact(): void {
    let live = 0;
    for (let k = 0; k < this.#keyHigh; k++) if (this.#keyB[k] !== -1) live += this.#keyLength[k] as number;
    const units = new Uint16Array(Math.max(INITIAL_UNITS, 2 * live));
    let used = 0;
    for (let k = 0; k < this.#keyHigh; k++) {
      if (this.#keyB[k] === -1) continue;
      const start = this.#keyStart[k] as number;
      const length = this.#keyLength[k] as number;
      units.set(this.#units.subarray(start, start + length), used);
      this.#keyStart[k] = used;
      used += length;
    }
    this.#units = units;
    this.#unitsUsed = used;
  }

  /** Whether key `k`'s `a` is `a`. */
  #sameA(k: number, a: string): boolean {
    const length = this.#keyLength[k] as number;
    if (length !== a.length) return false;
    const start = this.#keyStart[k] as number;
    const units = this.#units;
    for (let i = 0; i < length; i++) if (units[start + i] !== a.charCodeAt(i)) return false;
    return true;
  }

  #a(k: number): string {
    return stringOf(this.#units, this.#keyStart[k] as number, this.#keyLength[k] as number);
  }

  #b(k: number): string {
    return this.#atoms[this.#keyB[k] as number] as string;
  }

  #c(k: number): string {
    return this.#atoms[this.#keyC[k] as number] as string;
  }

  /** The number of an interned `b` or `c`, interned on first use. */
  #atom(value: string): number {
    let n = this.#atomOf.get(value);
    if (n === undefined) {
      n = this.#atoms.length;
      this.#atoms.push(value);
      this.#atomOf.set(value, n);
    }
    return n;
  }

  /** Rebuilds the bucket chains of the keys in use, over `size` buckets. */
  #rehash(size: number): void {
    const buckets = new Int32Array(size).fill(-1);
    for (let k = 0; k < this.#keyHigh; k++) {
      if (this.#keyB[k] === -1) continue;
      const b = (this.#keyHash[k] as number) & (size - 1);
      this.#nextKey[k] = buckets[b] as number;
      buckets[b] = k;
    }
    this.#buckets = buckets;
  }

  #releaseKey(k: number): void {
    for (let h = 0; h < HOURS; h++) {
      const s = this.#keySlots[k * HOURS + h] as number;
      if (s < 0) continue;
      this.#keySlots[k * HOURS + h] = -1;
      this.#slotKey[s] = -1;
      this.#counts.fill(0, s * this.columns, (s + 1) * this.columns);
      this.#drained.fill(0, s * this.columns, (s + 1) * this.columns);
      this.#free.push(s);
      this.#used--;
    }
    this.#keyB[k] = -1;
    this.#keyC[k] = -1;
    this.#freeKeys.push(k);
    this.generation++;
  }

  #newKey(hash: number, a: string, b: string, c: string): number {
    let k = this.#freeKeys.pop();
    if (k === undefined) {
      if (this.#keyHigh === this.#keyCapacity) {
        const capacity = Math.max(INITIAL_CAPACITY, this.#keyCapacity * 2);
        this.#nextKey = grown(this.#nextKey, capacity, -1);
        this.#keyHash = grown(this.#keyHash, capacity, 0);
        this.#keySlots = grown(this.#keySlots, capacity * HOURS, -1);
        this.#keyStart = grown(this.#keyStart, capacity, 0);
        this.#keyLength = grown(this.#keyLength, capacity, 0);
        this.#keyB = grown(this.#keyB, capacity, -1);
        this.#keyC = grown(this.#keyC, capacity, -1);
        this.#keyCapacity = capacity;
      }
      k = this.#keyHigh++;
    }
    // At most one key per two buckets: chains stay short. (Before `k` is in use: a rehash links
    // every key in use.)
    const keys = this.#keyHigh - this.#freeKeys.length; // `k` included
    if (2 * keys > this.#buckets.length) this.#rehash(this.#buckets.length * 2);
    if (this.#unitsUsed + a.length > this.#units.length) {
      this.#units = grown(this.#units, Math.max(2 * this.#units.length, this.#unitsUsed + a.length), 0);
    }
    const start = this.#unitsUsed;
    for (let i = 0; i < a.length; i++) this.#units[start + i] = a.charCodeAt(i);
    this.#unitsUsed = start + a.length;
    this.#keyStart[k] = start;
    this.#keyLength[k] = a.length;
    this.#keyB[k] = this.#atom(b);
    this.#keyC[k] = this.#atom(c);
    this.#keyHash[k] = hash;
    const bucket = hash & (this.#buckets.length - 1);
    this.#nextKey[k] = this.#buckets[bucket] as number;
    this.#buckets[bucket] = k;
    return k;
  }

  #allocate(): number {
    this.#used++;
    const reused = this.#free.pop();
    if (reused !== undefined) return reused;
    if (this.#high === this.#capacity) {
      const capacity = Math.max(INITIAL_CAPACITY, this.#capacity * 2);
      this.#counts = grown(this.#counts, capacity * this.columns, 0);
      this.#drained = grown(this.#drained, capacity * this.columns, 0);
      this.#slotKey = grown(this.#slotKey, capacity, -1);
      this.#slotHour = grown(this.#slotHour, capacity, 0);
      this.#capacity = capacity;
    }
    return this.#high++;
  }
}

const SERVED = 0;
const IMPRESSIONS = 1;

function rate(numerator: number, denominator: number): number | null {
  return denominator === 0 ? null : Math.round((numerator / denominator) * 1e6) / 1e6;
}

function checkLimit(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < 0)
    throw new RangeError(`${name} must be a non-negative integer`);
  return value;
}

export class ServedStats {
  readonly #rows: CounterTable;
  readonly #noFill: CounterTable;
  readonly #startedAtMs: number;
  #droppedServed = 0;
  #droppedImpressions = 0;
  #droppedNoFill = 0;
  /**
   * Row keys of each table's ads counted by `servedAd`: key + 1; 0 not looked up yet; -1 refused
   * (new while the table was full), so a full table costs an array read per serve, not a hash.
   */
  readonly #adKeys = new WeakMap<AdKeys, AdKeyCache>();
  #lastAdKeys: AdKeyCache | null = null;

  constructor(options: ServedStatsOptions) {
    this.#rows = new CounterTable(2, checkLimit(options.maxKeys ?? DEFAULT_MAX_KEYS, "maxKeys"));
    this.#noFill = new CounterTable(
      1,
      checkLimit(options.maxNoFillKeys ?? DEFAULT_MAX_NO_FILL_KEYS, "maxNoFillKeys"),
    );
    this.#startedAtMs = options.startedAtMs;
  }

  /** One ad served for a request of (country, lang) in that UTC hour. */
  served(adId: string, country: string, lang: string, hour: number): void {
    const s = this.#rows.slot(adId, country, lang, hour);
    if (s < 0) this.#droppedServed++;
    else this.#rows.add(s, SERVED, 1);
  }

  /**
   * One ad served, by its number in a catalog's ads (the hot path): counted as
   * `served(ads.id(ad), ads.country(ad), ads.lang(ad), hour)` (an ad is served only for its own
   * country and language). The row key of each ad is remembered per table, so an ad served
   * again costs no hashing of its id (4 bytes an ad, kept as long as the table).
   */
  servedAd(ads: AdKeys, ad: number, hour: number): void {
    if (
      !(hour >= 0 && hour < HOURS && (hour | 0) === hour && ad >= 0 && ad < ads.length && (ad | 0) === ad)
    ) {
      this.#droppedServed++;
      return;
    }
    const known = this.#keysOf(ads);
    let k = (known[ad] as number) - 1;
    if (k === -1) {
      k = this.#rows.key(ads.id(ad), ads.country(ad), ads.lang(ad));
      known[ad] = k >= 0 ? k + 1 : -1;
    }
    const s = k >= 0 ? this.#rows.slotOfKey(k, hour) : -1;
    if (s < 0) this.#droppedServed++;
    else this.#rows.add(s, SERVED, 1);
  }

  /**
   * The remembered row keys of a table's ads. Per table (answers that awaited the player store
   * may still count against the table swapped out), dropped with the table; all forgotten when
   * `retain` frees keys.
   */
  #keysOf(ads: AdKeys): Int32Array {
    const last = this.#lastAdKeys;
    if (last !== null && last.ads === ads && last.generation === this.#rows.generation) return last.keys;
    let known = this.#adKeys.get(ads);
    if (known === undefined || known.generation !== this.#rows.generation) {
      known = { ads, keys: new Int32Array(ads.length), generation: this.#rows.generation };
      this.#adKeys.set(ads, known);
    }
    this.#lastAdKeys = known;
    return known.keys;
  }

  /** One counted impression (not a replay) for a decision taken in that UTC hour. */
  impression(adId: string, country: string, lang: string, hour: number): void {
    const s = this.#rows.slot(adId, country, lang, hour);
    if (s < 0) this.#droppedImpressions++;
    else this.#rows.add(s, IMPRESSIONS, 1);
  }

  /** One valid request that got no ad, and why. */
  noFill(country: string, lang: string, hour: number, reason: string): void {
    const s = this.#noFill.slot(country, lang, reason, hour);
    if (s < 0) this.#droppedNoFill++;
    else this.#noFill.add(s, 0, 1);
  }

  /**
   * Adds counts in bulk: a delta from `drain()` (put back after a failed flush) or fleet totals
   * read from Redis. Rows past the bound are counted as dropped, as single counts are.
   */
  merge(delta: StatsDelta): void {
    for (const r of delta.rows) {
      const s = this.#rows.slot(r.ad, r.country, r.lang, r.hour);
      if (s < 0) {
        this.#droppedServed += r.served;
        this.#droppedImpressions += r.impressions;
        continue;
      }
      if (r.served > 0) this.#rows.add(s, SERVED, r.served);
      if (r.impressions > 0) this.#rows.add(s, IMPRESSIONS, r.impressions);
    }
    for (const r of delta.no_fill_rows) {
      const s = this.#noFill.slot(r.country, r.lang, r.reason, r.hour);
      if (s < 0) this.#droppedNoFill += r.count;
      else this.#noFill.add(s, 0, r.count);
    }
  }

  /** Rows in use: served/impression rows and no-fill rows. */
  get size(): { readonly rows: number; readonly noFillRows: number } {
    return { rows: this.#rows.size, noFillRows: this.#noFill.size };
  }

  /** Changes the row bound (e.g. catalog size × 24 after a swap). Existing rows stay. */
  setMaxKeys(maxKeys: number): void {
    this.#rows.maxKeys = checkLimit(maxKeys, "maxKeys");
  }

  /** Drops the rows of ads `isLive` refuses (ads that left the catalog). Drain first to keep them. */
  retain(isLive: (adId: string) => boolean): void {
    this.#rows.retain(isLive);
  }

  /** Cumulative counts and rates as the `GET /stats` body. */
  snapshot(nowMs: number, options: { readonly includeRows?: boolean } = {}): StatsSnapshot {
    const includeRows = options.includeRows ?? true;
    const rows: StatsRow[] = [];
    const noFillRows: NoFillRow[] = [];
    // Requests per (country, lang), for the per-ad share.
    const pairs = new Map<string, { served: number; noFill: number }>();
    const pair = (country: string, lang: string) => {
      const k = `${country}\u0000${lang}`;
      let p = pairs.get(k);
      if (p === undefined) {
        p = { served: 0, noFill: 0 };
        pairs.set(k, p);
      }
      return p;
    };
    const ads = new Map<string, { served: number; impressions: number; pairs: Set<string> }>();
    const countries = new Map<string, { served: number; impressions: number; noFill: number }>();
    const country = (c: string) => {
      let entry = countries.get(c);
      if (entry === undefined) {
        entry = { served: 0, impressions: 0, noFill: 0 };
        countries.set(c, entry);
      }
      return entry;
    };
    const reasons = new Map<string, number>();
    let served = 0;
    let impressions = 0;
    let noFill = 0;

    this.#rows.forEach((ad, c, lang, hour, counts) => {
      const s = counts[SERVED] as number;
      const i = counts[IMPRESSIONS] as number;
      served += s;
      impressions += i;
      pair(c, lang).served += s;
      let a = ads.get(ad);
      if (a === undefined) {
        a = { served: 0, impressions: 0, pairs: new Set() };
        ads.set(ad, a);
      }
      a.served += s;
      a.impressions += i;
      a.pairs.add(`${c}\u0000${lang}`);
      const e = country(c);
      e.served += s;
      e.impressions += i;
      if (includeRows) rows.push({ ad, country: c, lang, hour, served: s, impressions: i });
    });
    this.#noFill.forEach((c, lang, reason, hour, counts) => {
      const n = counts[0] as number;
      noFill += n;
      pair(c, lang).noFill += n;
      country(c).noFill += n;
      reasons.set(reason, (reasons.get(reason) ?? 0) + n);
      if (includeRows) noFillRows.push({ country: c, lang, reason, hour, count: n });
    });

    const byAd: Record<string, Rates> = Object.create(null);
    for (const ad of [...ads.keys()].sort()) {
      const a = ads.get(ad) as { served: number; impressions: number; pairs: Set<string> };
      let requests = 0;
      for (const k of a.pairs) {
        const p = pairs.get(k) as { served: number; noFill: number };
        requests += p.served + p.noFill;
      }
      byAd[ad] = {
        requests,
        served: a.served,
        impressions: a.impressions,
        fill_rate: rate(a.served, requests),
        show_rate: rate(a.impressions, a.served),
      };
    }
    const byCountry: Record<string, CountryStats> = Object.create(null);
    for (const c of [...countries.keys()].sort()) {
      const e = countries.get(c) as { served: number; impressions: number; noFill: number };
      byCountry[c] = countryStats(e.served, e.impressions, e.noFill);
    }
    const byReason: Record<string, number> = Object.create(null);
    for (const r of [...reasons.keys()].sort()) byReason[r] = reasons.get(r) as number;

    rows.sort(
      (x, y) => cmp(x.ad, y.ad) || cmp(x.country, y.country) || cmp(x.lang, y.lang) || x.hour - y.hour,
    );
    noFillRows.sort(
      (x, y) =>
        cmp(x.country, y.country) || cmp(x.lang, y.lang) || cmp(x.reason, y.reason) || x.hour - y.hour,
    );
    return {
      generated_at: new Date(nowMs).toISOString(),
      since: new Date(this.#startedAtMs).toISOString(),
      totals: countryStats(served, impressions, noFill),
      by_ad: byAd,
      by_country: byCountry,
      no_fill_by_reason: byReason,
      rows,
      no_fill_rows: noFillRows,
      dropped: {
        served: this.#droppedServed,
        impressions: this.#droppedImpressions,
        no_fill: this.#droppedNoFill,
      },
      limits: { max_keys: this.#rows.maxKeys, max_no_fill_keys: this.#noFill.maxKeys },
    };
  }

  /** The counts added since the previous `drain()` (only rows that grew). */
  drain(): StatsDelta {
    const rows: StatsRow[] = [];
    const noFillRows: NoFillRow[] = [];
    this.#rows.drain((ad, country, lang, hour, d) =>
      rows.push({
        ad,
        country,
        lang,
        hour,
        served: d[SERVED] as number,
        impressions: d[IMPRESSIONS] as number,
      }),
    );
    this.#noFill.drain((country, lang, reason, hour, d) =>
      noFillRows.push({ country, lang, reason, hour, count: d[0] as number }),
    );
    return { rows, no_fill_rows: noFillRows };
  }
}

function countryStats(served: number, impressions: number, noFill: number): CountryStats {
  const requests = served + noFill;
  return {
    requests,
    served,
    no_fill: noFill,
    impressions,
    fill_rate: rate(served, requests),
    show_rate: rate(impressions, served),
  };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
