/**
 * The ads of a snapshot in columns: typed arrays and a few long strings, not an object and two
 * strings per ad. A million ads are then a few dozen cells for the garbage collector, not four
 * million: each full collection of a serving heap used to mark them all, for 380-650 ms of a
 * core every 10-15 s under load (docs/performance.md, "Fourth session").
 *
 * `AdColumns` is plain data (typed arrays, arrays of strings), so it can be built anywhere and
 * posted between threads; `AdTable` reads it. Ads are numbered 0…n-1 in catalog order.
 * @module
 */
import type { Ad } from "./types.ts";

/**
 * Ads per text chunk: each chunk's ids and URLs are one string. A chunk from the catalog worker
 * arrives as UTF-8 bytes and is decoded on the serving thread when first read, inside a request:
 * 512 ads (about 32 KB) decode in 44-54 µs here; 4,096 (260 KB) took 0.17-0.44 ms, up to 1.3 ms
 * under load, each a stall in the middle of serving (the total per swap is about the same;
 * the stalls are shorter). 1,954 strings for a million ads are still few cells for the collector (18,403 for
 * a live 1M-ad snapshot, against about 13,000 with 4,096-ad chunks).
 */
export const TEXT_CHUNK_BITS = 9;
const TEXT_CHUNK = 1 << TEXT_CHUNK_BITS;

/** Optional fields per ad in `extra`, NaN when absent (the mime type as an index in `mimes`). */
const EXTRA = 6;
const CAP = 0;
const WINDOW = 1;
const DURATION = 2;
const MIME = 3;
const WIDTH = 4;
const HEIGHT = 5;

export interface AdColumns {
  readonly count: number;
  /** Distinct codes and mime types; the per-ad columns hold indexes into these. */
  readonly countries: readonly string[];
  readonly langs: readonly string[];
  readonly mimes: readonly string[];
  readonly country: Uint16Array;
  readonly lang: Uint16Array;
  /** start_hour, end_hour of ad i at 2i, 2i+1. */
  readonly hours: Uint8Array;
  /** 1 when the ad's id and video_url go into JSON as they are (see `bodyHead`). */
  readonly plain: Uint8Array;
  /**
   * Chunk k holds `id + video_url` of ads k·512 … k·512+511 (TEXT_CHUNK), one after the other: a
   * string, or its UTF-8 bytes (as the catalog worker sends it), decoded on first use.
   */
  readonly texts: readonly (string | Uint8Array)[];
  /** Where ad i's id (2i) and video_url (2i+1) start in its chunk. */
  readonly pos: Uint32Array;
  /** `EXTRA` numbers per ad, or null when no ad has an optional field. */
  readonly extra: Float64Array | null;
}

/** Keeps a leading U+FEFF (the default decoder drops it, which would shift a chunk's offsets). */
const DECODER = new TextDecoder("utf-8", { ignoreBOM: true });
const ENCODER = new TextEncoder();
/** A UTF-16 surrogate: a chunk with any is sent as a string (a lone one would not survive UTF-8). */
const SURROGATE = /[\ud800-\udfff]/;

/**
 * The columns with their text chunks as UTF-8 bytes where that round-trips (always, but for a
 * lone surrogate), for posting with the bytes' buffers transferred: strings would be copied.
 */
export function textsAsBytes(columns: AdColumns): AdColumns {
  const texts = columns.texts.map((t) => {
    if (typeof t !== "string") return t;
    const bytes = ENCODER.encode(t);
    // As many bytes as code units: all ASCII (the usual case, and no scan for surrogates).
    return bytes.length === t.length || !SURROGATE.test(t) ? bytes : t;
  });
  return { ...columns, texts };
}

/** Printable ASCII without `"` and `\\`: JSON.stringify leaves such a string as it is. */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

function hasExtra(ad: Ad): boolean {
  return (
    ad.frequency_cap !== undefined ||
    ad.frequency_window !== undefined ||
    ad.duration !== undefined ||
    ad.mime_type !== undefined ||
    ad.width !== undefined ||
    ad.height !== undefined
  );
}

function codeOf(table: Map<string, number>, list: string[], value: string): number {
  let code = table.get(value);
  if (code === undefined) {
    code = list.length;
    list.push(value);
    table.set(value, code);
  }
  return code;
}

/** Ads packed per step (between two possible pauses of a chunked build). */
const STEP = 256;

/** Packs validated ads into columns, yielding every `STEP` ads (see `runChunked`). */
export function* packSteps(ads: readonly Ad[]): Generator<void, AdColumns> {
  const n = ads.length;
  const countries: string[] = [];
  const langs: string[] = [];
  const mimes: string[] = [];
  const countryCodes = new Map<string, number>();
  const langCodes = new Map<string, number>();
  const mimeCodes = new Map<string, number>();
  const country = new Uint16Array(n);
  const lang = new Uint16Array(n);
  const hours = new Uint8Array(2 * n);
  const plain = new Uint8Array(n);
  const pos = new Uint32Array(2 * n);
  let extra: Float64Array | null = null;
  const texts: string[] = [];
  let parts: string[] = [];
  let at = 0;
  for (let i = 0; i < n; i++) {
    const ad = ads[i] as Ad;
    country[i] = codeOf(countryCodes, countries, ad.country);
    lang[i] = codeOf(langCodes, langs, ad.lang);
    hours[2 * i] = ad.start_hour;
    hours[2 * i + 1] = ad.end_hour;
    plain[i] = PLAIN.test(ad.id) && PLAIN.test(ad.video_url) ? 1 : 0;
    pos[2 * i] = at;
    pos[2 * i + 1] = at + ad.id.length;
    at += ad.id.length + ad.video_url.length;
    parts.push(ad.id, ad.video_url);
    if (hasExtra(ad)) {
      extra ??= new Float64Array(EXTRA * n).fill(Number.NaN);
      const e = EXTRA * i;
      // `+ 0` turns a -0 (JSON allows it) into 0, as JSON.stringify writes it: the version,
      // which hashes these bytes, is then that of the canonical document too.
      extra[e + CAP] = (ad.frequency_cap ?? Number.NaN) + 0;
      extra[e + WINDOW] = (ad.frequency_window ?? Number.NaN) + 0;
      extra[e + DURATION] = (ad.duration ?? Number.NaN) + 0;
      extra[e + MIME] = ad.mime_type === undefined ? Number.NaN : codeOf(mimeCodes, mimes, ad.mime_type);
      extra[e + WIDTH] = (ad.width ?? Number.NaN) + 0;
      extra[e + HEIGHT] = (ad.height ?? Number.NaN) + 0;
    }
    if ((i & (TEXT_CHUNK - 1)) === TEXT_CHUNK - 1 || i === n - 1) {
      // join builds one flat string: the ads' own strings are not kept alive by it.
      texts.push(parts.join(""));
      parts = [];
      at = 0;
    }
    if (i % STEP === STEP - 1) yield;
  }
  return { count: n, countries, langs, mimes, country, lang, hours, plain, texts, pos, extra };
}

/** Reads packed ads. Accessors take the ad's number (catalog order). */
export class AdTable implements Iterable<Ad> {
  readonly length: number;
  readonly #c: AdColumns;
  /** `columns.texts`, each chunk replaced by its string once decoded. */
  readonly #texts: (string | Uint8Array)[];

  constructor(columns: AdColumns) {
    this.#texts = [...columns.texts];
    // Its own texts array: a decoded chunk's bytes are then no longer held.
    this.#c = { ...columns, texts: this.#texts };
    this.length = columns.count;
  }

  /** The columns (plain data), for a copy of this table elsewhere. */
  get columns(): AdColumns {
    return this.#c;
  }

  #text(i: number): string {
    const k = i >>> TEXT_CHUNK_BITS;
    const text = this.#texts[k] as string | Uint8Array;
    if (typeof text === "string") return text;
    const decoded = DECODER.decode(text);
    this.#texts[k] = decoded;
    return decoded;
  }

  #urlEnd(i: number): number {
    const next = i + 1;
    return (next & (TEXT_CHUNK - 1)) === 0 || next === this.length
      ? this.#text(i).length
      : (this.#c.pos[2 * next] as number);
  }

  id(i: number): string {
    return this.#text(i).slice(this.#c.pos[2 * i], this.#c.pos[2 * i + 1]);
  }

  videoUrl(i: number): string {
    return this.#text(i).slice(this.#c.pos[2 * i + 1], this.#urlEnd(i));
  }

  country(i: number): string {
    return this.#c.countries[this.#c.country[i] as number] as string;
  }

  lang(i: number): string {
    return this.#c.langs[this.#c.lang[i] as number] as string;
  }

  startHour(i: number): number {
    return this.#c.hours[2 * i] as number;
  }

  endHour(i: number): number {
    return this.#c.hours[2 * i + 1] as number;
  }

  #extra(i: number, field: number): number | undefined {
    const v = this.#c.extra?.[EXTRA * i + field];
    return v === undefined || Number.isNaN(v) ? undefined : v;
  }

  frequencyCap(i: number): number | undefined {
    return this.#extra(i, CAP);
  }

  /** Seconds. */
  frequencyWindow(i: number): number | undefined {
    return this.#extra(i, WINDOW);
  }

  /**
   * The ad's JSON body without its closing `}`: `{"id":…,"video_url":…`, for the caller to
   * append members. Same text as `JSON.stringify({ id, video_url })`, without its cost for the
   * usual plain strings.
   */
  bodyHead(i: number): string {
    const id = this.id(i);
    const url = this.videoUrl(i);
    if (this.#c.plain[i] === 1) return `{"id":"${id}","video_url":"${url}"`;
    return JSON.stringify({ id, video_url: url }).slice(0, -1);
  }

  /** Ad i as an object (a new one each call: for tools and admin pages, not the hot path). */
  at(i: number): Ad {
    const ad: { -readonly [K in keyof Ad]: Ad[K] } = {
      id: this.id(i),
      video_url: this.videoUrl(i),
      country: this.country(i),
      lang: this.lang(i),
      start_hour: this.startHour(i),
      end_hour: this.endHour(i),
    };
    if (this.#c.extra === null) return ad;
    const cap = this.#extra(i, CAP);
    const window = this.#extra(i, WINDOW);
    const duration = this.#extra(i, DURATION);
    const mime = this.#extra(i, MIME);
    const width = this.#extra(i, WIDTH);
    const height = this.#extra(i, HEIGHT);
    // The order `validateCatalog` writes them in: media first, then the cap.
    if (duration !== undefined) ad.duration = duration;
    if (mime !== undefined) ad.mime_type = this.#c.mimes[mime] as string;
    if (width !== undefined) ad.width = width;
    if (height !== undefined) ad.height = height;
    if (cap !== undefined) ad.frequency_cap = cap;
    if (window !== undefined) ad.frequency_window = window;
    return ad;
  }

  *[Symbol.iterator](): Iterator<Ad> {
    for (let i = 0; i < this.length; i++) yield this.at(i);
  }

  /** Every ad as an object, in catalog order. */
  toArray(): Ad[] {
    return Array.from(this);
  }
}

/** Packs ads at once. */
export function packAds(ads: readonly Ad[]): AdTable {
  const steps = packSteps(ads);
  for (;;) {
    const next = steps.next();
    if (next.done) return new AdTable(next.value);
  }
}
