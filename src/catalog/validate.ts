/**
 * Catalog validation: untrusted JSON in, `{ ads, issues }` or a rejection out. Pure.
 *
 * An invalid entry is skipped with an issue; a document that is not `{"ads": [...]}`, or in
 * which every entry is invalid, is rejected whole. An empty `ads` list is a valid catalog.
 * @module
 */
import { normalizeCountry, normalizeLang } from "../codes/normalize.ts";
import { fnv1a } from "../crypto/fnv.ts";
import { validateMediaFields } from "../vast/media.ts";
import type { Ad, Issue, IssueCode, ValidationResult } from "./types.ts";

const ID = /^[\x21-\x7e]{1,128}$/;
const MAX_URL = 2048;

class EntryError {
  constructor(
    readonly code: IssueCode,
    readonly field: string | null,
    readonly message: string,
  ) {}
}

/** A field the entry does not have (`Object.hasOwn` false); JSON never yields `undefined`. */
const MISSING: unique symbol = Symbol("missing");
type Value = unknown | typeof MISSING;

function field(value: Value, name: string, type: "string" | "number"): unknown {
  if (value === MISSING) throw new EntryError("missing_field", name, `${name} is required`);
  if (typeof value !== type) throw new EntryError("wrong_type", name, `${name} must be a ${type}`);
  return value;
}

function hour(value: Value, name: string, max: number): number {
  const n = field(value, name, "number") as number;
  if (!Number.isInteger(n) || n < 0 || n > max) {
    throw new EntryError("invalid_hour", name, `${name} must be an integer from 0 to ${max}`);
  }
  return n;
}

/**
 * Memo tables for one validation run: catalogs repeat a few codes and hosts a million times.
 * Each table stops growing at MEMO_MAX entries (a hostile feed cannot make it large); a miss
 * simply computes the answer.
 */
const MEMO_MAX = 4096;
class Memo {
  readonly countries = new Map<string, string | null>();
  readonly langs = new Map<string, string | null>();
  readonly authorities = new Map<string, boolean>();
  /** The authority last looked up, and its answer: a catalog's URLs mostly share a few hosts. */
  lastAuthority = "";
  lastAnswer = false;
}

function memo<V>(table: Map<string, V>, key: string, compute: (key: string) => V): V {
  const hit = table.get(key);
  if (hit !== undefined || table.has(key)) return hit as V;
  const value = compute(key);
  if (table.size < MEMO_MAX) table.set(key, value);
  return value;
}

const HTTP_URL = /^https?:\/\/[\x21-\x7e]+$/i;

function parsesAsHttpUrl(raw: string): boolean {
  try {
    const url = new URL(raw);
    return (url.protocol === "http:" || url.protocol === "https:") && url.hostname !== "";
  } catch {
    return false;
  }
}

/**
 * For `^https?://` followed by printable ASCII, whether the URL parses (and its host is not
 * empty) depends only on the scheme and the authority: the WHATWG parser never fails in the
 * path, query or fragment states. So the answer is memoized by the prefix up to the first
 * `/`, `\`, `?` or `#` after `//`, unless the authority starts with a slash (then: no memo).
 */
function isHttpUrl(raw: string, memoTable: Memo | null): boolean {
  if (raw.length > MAX_URL || !HTTP_URL.test(raw)) return false;
  if (memoTable === null) return parsesAsHttpUrl(raw);
  // The same authority as the last URL: `raw` starts with it and a delimiter (or the end) follows.
  const last = memoTable.lastAuthority;
  if (last !== "" && raw.startsWith(last)) {
    const c = raw.charCodeAt(last.length);
    if (Number.isNaN(c) || c === 0x2f || c === 0x5c || c === 0x3f || c === 0x23) return memoTable.lastAnswer;
  }
  const from = raw.indexOf("//") + 2;
  const first = raw.charCodeAt(from);
  if (first === 0x2f || first === 0x5c) return parsesAsHttpUrl(raw);
  let end = from;
  for (; end < raw.length; end++) {
    const c = raw.charCodeAt(end);
    if (c === 0x2f || c === 0x5c || c === 0x3f || c === 0x23) break;
  }
  const authority = raw.slice(0, end);
  let ok = memoTable.authorities.get(authority);
  if (ok === undefined) {
    ok = parsesAsHttpUrl(raw);
    if (memoTable.authorities.size < MEMO_MAX) memoTable.authorities.set(authority, ok);
  }
  // Not an empty authority: a URL that starts with `https://` and then a slash is not memoized.
  if (end > from) {
    memoTable.lastAuthority = authority;
    memoTable.lastAnswer = ok;
  }
  return ok;
}

/** The checks of one entry, in a fixed order; the first failure is the entry's issue. */
function checkFields(
  idValue: Value,
  urlValue: Value,
  countryValue: Value,
  langValue: Value,
  startValue: Value,
  endValue: Value,
  memoTable: Memo | null,
): Ad {
  const id = field(idValue, "id", "string") as string;
  if (!ID.test(id)) throw new EntryError("invalid_id", "id", "id must be 1-128 printable ASCII characters");
  const videoUrl = field(urlValue, "video_url", "string") as string;
  if (!isHttpUrl(videoUrl, memoTable)) {
    throw new EntryError("invalid_video_url", "video_url", "video_url must be an absolute http(s) URL");
  }
  const countryRaw = field(countryValue, "country", "string") as string;
  const country =
    memoTable === null
      ? normalizeCountry(countryRaw)
      : memo(memoTable.countries, countryRaw, normalizeCountry);
  if (country === null) {
    throw new EntryError("unknown_country", "country", "country is not an ISO 3166-1 alpha-2 code");
  }
  const langRaw = field(langValue, "lang", "string") as string;
  const lang = memoTable === null ? normalizeLang(langRaw) : memo(memoTable.langs, langRaw, normalizeLang);
  if (lang === null) throw new EntryError("unknown_lang", "lang", "lang is not an ISO 639 code");
  const start = hour(startValue, "start_hour", 23);
  const end = hour(endValue, "end_hour", 24);
  return { id, video_url: videoUrl, country, lang, start_hour: start, end_hour: end };
}

function own(entry: Record<string, unknown>, name: string): Value {
  return Object.hasOwn(entry, name) ? entry[name] : MISSING;
}

function validateEntry(raw: unknown, memoTable: Memo | null): Ad {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new EntryError("not_object", null, "entry must be an object");
  }
  const entry = raw as Record<string, unknown>;
  const ad = checkFields(
    own(entry, "id"),
    own(entry, "video_url"),
    own(entry, "country"),
    own(entry, "lang"),
    own(entry, "start_hour"),
    own(entry, "end_hour"),
    memoTable,
  );
  return withOptionalFields(ad, entry);
}

/** Optional per-ad fields: VAST media details and frequency-cap overrides. Absent stays absent. */
function withOptionalFields(ad: Ad, entry: Record<string, unknown>): Ad {
  const hasMedia =
    Object.hasOwn(entry, "duration") ||
    Object.hasOwn(entry, "mime_type") ||
    Object.hasOwn(entry, "width") ||
    Object.hasOwn(entry, "height");
  const hasCap = Object.hasOwn(entry, "frequency_cap") || Object.hasOwn(entry, "frequency_window");
  if (!hasMedia && !hasCap) return ad;
  const out: { -readonly [K in keyof Ad]: Ad[K] } = { ...ad };
  if (hasMedia) {
    const media = validateMediaFields(entry);
    if (!media.ok)
      throw new EntryError(
        media.code === "wrong_type" ? "wrong_type" : "invalid_media",
        media.field,
        media.message,
      );
    Object.assign(out, media.media);
  }
  if (Object.hasOwn(entry, "frequency_cap")) {
    const cap = entry.frequency_cap;
    if (typeof cap !== "number" || !Number.isSafeInteger(cap) || cap < 0) {
      throw new EntryError(
        "invalid_frequency",
        "frequency_cap",
        "frequency_cap must be an integer of at least 0",
      );
    }
    out.frequency_cap = cap;
  }
  if (Object.hasOwn(entry, "frequency_window")) {
    const window = entry.frequency_window;
    if (typeof window !== "number" || !Number.isFinite(window) || window <= 0 || window > 31_536_000) {
      throw new EntryError(
        "invalid_frequency",
        "frequency_window",
        "frequency_window must be seconds, > 0 and at most a year",
      );
    }
    out.frequency_window = window;
  }
  return out;
}

function readableId(raw: unknown): string | null {
  if (typeof raw !== "object" || raw === null) return null;
  const id = (raw as Record<string, unknown>).id;
  return typeof id === "string" ? id.slice(0, 128) : null;
}

/** Entries yield to the caller (see `runChunked`) every this many. */
const STEP = 128;

const DUPLICATE_MESSAGE = "id already used by an earlier entry";

/** Buckets of the duplicate search: 2^12 by the hash's top bits (a few hundred ads each for 1M). */
const BUCKET_BITS = 12;
/** The hash bits left below the bucket's, in a sort key `low hash bits · 2^k + position`. */
const LOW_BITS = 32 - BUCKET_BITS;
const LOW_MASK = (1 << LOW_BITS) - 1;

/** Buckets bigger than this (equal ids, or crafted hashes) take a set, paced, not one sort. */
const SORTED_BUCKET_MAX = 4096;

/**
 * Which of `ads` have an id that an earlier ad has (1 at their position), or null when none
 * does. Instead of a set of a million ids (about 230 ns an ad here, most of a catalog's
 * validation after the parse), the ads are hashed, spread into buckets by the hash's top bits,
 * each bucket sorted by the rest of the hash and the position, and only equal hashes compare
 * their ids (docs/performance.md, "Tenth session"). A bucket over SORTED_BUCKET_MAX ads is
 * walked in catalog order with a set of its ids instead, so every step stays short and the
 * work linear whatever the ids.
 */
function* duplicateSteps(ads: readonly Ad[]): Generator<void, Uint8Array | null> {
  const n = ads.length;
  const hashes = new Uint32Array(n);
  const starts = new Uint32Array((1 << BUCKET_BITS) + 1);
  for (let i = 0; i < n; i++) {
    const h = fnv1a((ads[i] as Ad).id) >>> 0;
    hashes[i] = h;
    starts[(h >>> LOW_BITS) + 1] = (starts[(h >>> LOW_BITS) + 1] as number) + 1;
    if (i % (8 * STEP) === 8 * STEP - 1) yield;
  }
  for (let b = 1; b < starts.length; b++) starts[b] = (starts[b] as number) + (starts[b - 1] as number);
  // Keys `low bits · scale + position` (exact in a double below 2^53: scale ≤ 2^33), bucket by
  // bucket, in catalog order within each.
  const scale = 2 ** Math.max(1, Math.ceil(Math.log2(n + 1)));
  const keys = new Float64Array(n);
  const fill = starts.slice(0, -1);
  for (let i = 0; i < n; i++) {
    const h = hashes[i] as number;
    const b = h >>> LOW_BITS;
    const at = fill[b] as number;
    keys[at] = (h & LOW_MASK) * scale + i;
    fill[b] = at + 1;
    if (i % (8 * STEP) === 8 * STEP - 1) yield;
  }
  let duplicate: Uint8Array | null = null;
  const mark = (at: number): void => {
    duplicate ??= new Uint8Array(n);
    duplicate[at] = 1;
  };
  for (let b = 0; b + 1 < starts.length; b++) {
    const from = starts[b] as number;
    const to = starts[b + 1] as number;
    if (to - from > SORTED_BUCKET_MAX) {
      const ids = new Set<string>();
      for (let j = from; j < to; j++) {
        const at = (keys[j] as number) % scale;
        const id = (ads[at] as Ad).id;
        if (ids.has(id)) mark(at);
        else ids.add(id);
        if ((j - from) % STEP === STEP - 1) yield;
      }
      continue;
    }
    if (to - from < 2) continue;
    const bucket = keys.subarray(from, to).sort();
    // Runs of one hash, positions ascending: the first ad of each id stays.
    for (let r = 0; r < bucket.length; ) {
      const low = Math.floor((bucket[r] as number) / scale);
      let e = r + 1;
      while (e < bucket.length && Math.floor((bucket[e] as number) / scale) === low) e++;
      if (e - r > 1) {
        const ids = new Set<string>();
        for (let j = r; j < e; j++) {
          const at = (bucket[j] as number) - low * scale;
          const id = (ads[at] as Ad).id;
          if (ids.has(id)) mark(at);
          else ids.add(id);
        }
      }
      r = e;
    }
    if (b % 64 === 63) yield;
  }
  return duplicate;
}

/** Accumulates the valid ads and the issues of one document, entry by entry. */
class Collector {
  ads: Ad[] = [];
  issues: Issue[] = [];
  /** The entry index of each of `ads`. */
  private readonly entries: number[] = [];
  readonly memo = new Memo();

  /** One entry as a parsed JSON value (duplicate ids are found at the end: `resultSteps`). */
  entry(index: number, raw: unknown): void {
    try {
      this.ads.push(validateEntry(raw, this.memo));
      this.entries.push(index);
    } catch (error) {
      this.issue(error, index, readableId(raw));
    }
  }

  private issue(error: unknown, index: number, id: string | null): void {
    if (!(error instanceof EntryError)) throw error;
    this.issues.push({ index, id, code: error.code, field: error.field, message: error.message });
  }

  /** Drops the ads whose id an earlier valid ad has, each with an issue, in entry order. */
  private *dropDuplicates(): Generator<void, void> {
    const duplicate = yield* duplicateSteps(this.ads);
    if (duplicate === null) return;
    const ads: Ad[] = [];
    const found: Issue[] = [];
    for (let i = 0; i < this.ads.length; i++) {
      const ad = this.ads[i] as Ad;
      if (duplicate[i] === 0) ads.push(ad);
      else {
        const index = this.entries[i] as number;
        found.push({ index, id: ad.id, code: "duplicate_id", field: "id", message: DUPLICATE_MESSAGE });
      }
      if (i % (8 * STEP) === 8 * STEP - 1) yield;
    }
    // Both lists are in entry order: merged.
    const issues: Issue[] = [];
    let a = 0;
    let d = 0;
    while (a < this.issues.length || d < found.length) {
      const x = this.issues[a];
      const y = found[d];
      if (y === undefined || (x !== undefined && x.index < y.index)) {
        issues.push(x as Issue);
        a++;
      } else {
        issues.push(y);
        d++;
      }
      if ((a + d) % (8 * STEP) === 0) yield;
    }
    this.ads = ads;
    this.issues = issues;
  }

  *resultSteps(count: number): Generator<void, ValidationResult> {
    yield* this.dropDuplicates();
    if (count > 0 && this.ads.length === 0) {
      return {
        ok: false,
        code: "all_invalid",
        message: `all ${count} entries are invalid`,
        issues: this.issues,
      };
    }
    return { ok: true, ads: this.ads, issues: this.issues };
  }
}

function* validateSteps(doc: unknown): Generator<void, ValidationResult> {
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    return {
      ok: false,
      code: "wrong_shape",
      message: 'catalog must be an object {"ads": [...]}',
      issues: [],
    };
  }
  const list = (doc as Record<string, unknown>).ads;
  if (!Array.isArray(list)) {
    return { ok: false, code: "wrong_shape", message: 'catalog must have an "ads" array', issues: [] };
  }
  const collector = new Collector();
  for (let index = 0; index < list.length; index++) {
    collector.entry(index, list[index]);
    if (index % STEP === STEP - 1) yield;
  }
  return yield* collector.resultSteps(list.length);
}

/** Validates a parsed catalog document. */
export function validateCatalog(doc: unknown): ValidationResult {
  return runSync(validateSteps(doc));
}

// ---------------------------------------------------------------------------------------------
// Parsing. A catalog is megabytes of `{"ads":[{…},{…},…]}`. Parsed whole, `JSON.parse` blocks the
// thread for about a second per million ads and holds every raw entry object at once. So when the
// text has the plain shape — `{"ads":[` and `]}` around the list, and no backslash anywhere — the
// list is cut between entries into pieces of about PIECE characters and each piece is parsed as
// an array of its own (and validated), so a reload can yield to the server between pieces.
// The cuts are safe: without backslashes every string is two quotes around quote-free text, so a
// piece that parses has an even number of quotes and balanced brackets, hence every cut lies
// between two entries of the list, and the pieces hold exactly the entries of the whole list.
// If any piece fails to parse, the whole text goes through `JSON.parse` instead, so results and
// error messages are exactly those of the general path.

const PIECE = 1 << 16;

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/**
 * The document as the piecewise parse reads it: a string, or its UTF-8 bytes (pieces decoded one
 * at a time, so no string of the whole document is made). Every character the parse looks for
 * is ASCII, and in UTF-8 an ASCII byte is always that character (never part of another one, and
 * the decoder turns bad sequences into U+FFFD without taking the ASCII byte after them), so cuts
 * found in the bytes are cuts of the decoded text.
 */
interface Text {
  readonly length: number;
  /** The code unit (string) or byte at `i`; NaN or undefined past the end. */
  code(i: number): number | undefined;
  /** Where the ASCII character `c` next occurs from `from`, or -1. */
  find(c: number, from: number): number;
  /** The text of `[from, to)` as a string. */
  piece(from: number, to: number): string;
}

function stringText(text: string): Text {
  return {
    length: text.length,
    code: (i) => text.charCodeAt(i),
    find: (c, from) => text.indexOf(String.fromCharCode(c), from),
    piece: (from, to) => text.slice(from, to),
  };
}

/** Keeps a U+FEFF inside a piece (none can start one: a piece starts at `{`). */
const PIECE_DECODER = new TextDecoder("utf-8", { ignoreBOM: true });

function bytesText(bytes: Uint8Array): Text {
  return {
    length: bytes.length,
    code: (i) => bytes[i],
    find: (c, from) => bytes.indexOf(c, from),
    piece: (from, to) => PIECE_DECODER.decode(bytes.subarray(from, to)),
  };
}

function isWsAt(text: Text, i: number): boolean {
  const c = text.code(i);
  return c !== undefined && isWs(c);
}

const ADS_KEY = [0x22, 0x61, 0x64, 0x73, 0x22]; // "ads"

/** The list's bounds `[open bracket + 1, close bracket)` for the plain shape, else null. */
function listBounds(text: Text, start: number): readonly [number, number] | null {
  if (text.find(0x5c, start) >= 0) return null;
  let p = start;
  while (isWsAt(text, p)) p++;
  if (text.code(p++) !== 0x7b) return null;
  while (isWsAt(text, p)) p++;
  for (const c of ADS_KEY) if (text.code(p++) !== c) return null;
  while (isWsAt(text, p)) p++;
  if (text.code(p++) !== 0x3a) return null;
  while (isWsAt(text, p)) p++;
  if (text.code(p++) !== 0x5b) return null;
  let q = text.length - 1;
  while (q > p && isWsAt(text, q)) q--;
  if (text.code(q--) !== 0x7d) return null;
  while (q > p && isWsAt(text, q)) q--;
  if (q < p || text.code(q) !== 0x5d) return null;
  return [p, q];
}

/** Where the piece starting at `from` ends (just after an entry's `}`), and where the next starts. */
function cut(text: Text, from: number, end: number): readonly [number, number] {
  let k = from + PIECE;
  while (k < end) {
    k = text.find(0x7d, k);
    if (k < 0 || k >= end) break;
    let p = k + 1;
    while (isWsAt(text, p)) p++;
    if (text.code(p) === 0x2c) {
      p++;
      while (isWsAt(text, p)) p++;
      if (text.code(p) === 0x7b) return [k + 1, p];
    }
    k++;
  }
  return [end, end];
}

function* piecewiseSteps(text: Text, start: number, end: number): Generator<void, ValidationResult | null> {
  const collector = new Collector();
  let index = 0;
  let from = start;
  let p = start;
  while (p < end && isWsAt(text, p)) p++;
  if (p === end) return yield* collector.resultSteps(0); // an empty list
  while (from < end) {
    const [stop, next] = cut(text, from, end);
    let piece: unknown;
    try {
      piece = JSON.parse(`[${text.piece(from, stop)}]`);
    } catch {
      return null;
    }
    const list = piece as unknown[];
    yield;
    for (let i = 0; i < list.length; i++) {
      collector.entry(index++, list[i]);
      if (i % STEP === STEP - 1) yield;
    }
    from = next;
  }
  return yield* collector.resultSteps(index);
}

/** The general path: the whole text through `JSON.parse`, then validation. */
function* wholeSteps(text: string): Generator<void, ValidationResult> {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (error) {
    const detail = error instanceof Error ? error.message : "invalid JSON";
    return {
      ok: false,
      code: "malformed_json",
      message: `catalog is not JSON: ${detail.slice(0, 200)}`,
      issues: [],
    };
  }
  return yield* validateSteps(doc);
}

export function* parseSteps(text: string): Generator<void, ValidationResult> {
  const source = stringText(text);
  const bounds = listBounds(source, 0);
  if (bounds !== null) {
    const result = yield* piecewiseSteps(source, bounds[0], bounds[1]);
    if (result !== null) return result;
  }
  return yield* wholeSteps(text);
}

/**
 * `parseSteps` of the UTF-8 text `bytes` (a leading byte order mark dropped, as `TextDecoder`
 * does): the same result, but the plain shape is cut and decoded piece by piece, so the whole
 * document never becomes one string (1M ads: 144 MiB that the collector then has to free).
 */
export function* parseBytesSteps(
  bytes: Uint8Array,
  /** Called once the whole text is decoded (the general path): the bytes are no longer read. */
  decoded?: () => void,
): Generator<void, ValidationResult> {
  const bom = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
  const source = bytesText(bytes);
  const bounds = listBounds(source, bom);
  if (bounds !== null) {
    const result = yield* piecewiseSteps(source, bounds[0], bounds[1]);
    if (result !== null) return result;
  }
  const text = new TextDecoder().decode(bytes);
  decoded?.();
  return yield* wholeSteps(text);
}

/** Parses JSON text and validates it. */
export function parseCatalog(text: string): ValidationResult {
  return runSync(parseSteps(text));
}

/** `parseCatalog` of UTF-8 bytes (see `parseBytesSteps`). */
export function parseCatalogBytes(bytes: Uint8Array): ValidationResult {
  return runSync(parseBytesSteps(bytes));
}

/**
 * `parseCatalog` in steps: runs for about `sliceMs` at a time, then awaits `pause()` (for
 * example a macrotask), so a server keeps answering while a big catalog is parsed. Same result.
 */
export function parseCatalogChunked(
  text: string,
  pause: () => Promise<void>,
  sliceMs = 4,
): Promise<ValidationResult> {
  return runChunked(parseSteps(text), pause, sliceMs);
}

/** Runs a stepped computation to the end at once. */
export function runSync<T>(steps: Generator<void, T>): T {
  for (;;) {
    const next = steps.next();
    if (next.done) return next.value;
  }
}

/** Runs a stepped computation, pausing whenever a slice of `sliceMs` is used up. */
export async function runChunked<T>(
  steps: Generator<void, T>,
  pause: () => Promise<void>,
  sliceMs: number,
): Promise<T> {
  let sliceStart = performance.now();
  for (;;) {
    const next = steps.next();
    if (next.done) return next.value;
    if (performance.now() - sliceStart >= sliceMs) {
      await pause();
      sliceStart = performance.now();
    }
  }
}
