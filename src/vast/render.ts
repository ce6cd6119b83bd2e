/**
 * VAST 4.2 documents for standard video players (issue 7). Pure: no clock, no I/O.
 *
 * Every document is in the IAB namespace (`<VAST xmlns="http://www.iab.com/VAST" version="4.2">`):
 * the schema (`vast_4.2.xsd`) declares `elementFormDefault="qualified"`, so elements without the
 * namespace do not validate. Players match on local names and read it either way.
 *
 * An ad is one `<InLine>`:
 *
 * ```xml
 * <VAST xmlns="http://www.iab.com/VAST" version="4.2"><Ad id="ID"><InLine>
 *   <AdSystem>adsrv</AdSystem>[<Error>ERROR_URL</Error>]<Impression>IMPRESSION_URL</Impression>
 *   <AdServingId>SERVING_ID</AdServingId><AdTitle>ID</AdTitle>
 *   <Creatives><Creative id="ID" adId="ID"><Linear><Duration>00:00:30.000</Duration>
 *     <MediaFiles><MediaFile delivery="progressive" type="video/mp4" width="1280" height="720">VIDEO_URL</MediaFile></MediaFiles>
 *   </Linear><UniversalAdId idRegistry="adsrv">ID</UniversalAdId></Creative></Creatives>
 * </InLine></Ad></VAST>
 * ```
 *
 * The hot path: `prepareVast(ad)` builds the per-ad parts once (`head`, `tail`); per request only
 * the impression URL, the serving id and the optional error URL are escaped and joined
 * (`renderPrepared`). `createVastCache` keeps prepared ads in a bounded map so a huge catalog need
 * not hold a prepared copy of every ad. URLs go into CDATA after `toAnyUri` (see xml.ts), so
 * `]]>`, `&` or a space in a catalog URL still yield a valid document.
 *
 * No fill: `<VAST version="4.2">` holding only an `<Error>` (the schema types it `xs:anyURI`):
 * the caller's error-tracking URL when given, else `urn:adsrv:no-fill:<reason>`, which names the
 * reason (a player that pings it fails harmlessly). Served with status 200: VAST players treat any
 * non-2xx as a transport error, and an empty/Error-only VAST as "no ad".
 * @module
 */
import { cdata, escapeAttr, escapeText, toAnyUri } from "./xml.ts";

/** IAB VAST namespace, the schema's target namespace. */
export const VAST_NAMESPACE = "http://www.iab.com/VAST";
export const VAST_CONTENT_TYPE = "application/xml; charset=utf-8";

export const DEFAULT_DURATION_SECONDS = 30;
export const DEFAULT_MIME_TYPE = "video/mp4";
export const DEFAULT_WIDTH = 1280;
export const DEFAULT_HEIGHT = 720;
export const DEFAULT_AD_SYSTEM = "adsrv";
export const DEFAULT_ID_REGISTRY = "adsrv";

/** What a VAST document needs from an ad (the catalog `Ad` plus the optional media fields). */
export interface VastAd {
  readonly id: string;
  readonly video_url: string;
  /** Seconds, > 0; default 30. */
  readonly duration?: number | undefined;
  /** Default `video/mp4`. */
  readonly mime_type?: string | undefined;
  /** Pixels; defaults 1280 × 720. */
  readonly width?: number | undefined;
  readonly height?: number | undefined;
}

/** Per-request values. */
export interface VastRequest {
  /** `<AdServingId>`: unique per response (a UUID or the impression nonce). */
  readonly adServingId: string;
  /** The `/impression?t=…` URL the player calls when the ad starts. */
  readonly impressionUrl: string;
  /** Optional `<Error>` tracking URL for this ad. */
  readonly errorUrl?: string | undefined;
}

/** Per-server values, fixed at preparation. */
export interface VastOptions {
  /** `<AdSystem>`; default "adsrv". */
  readonly adSystem?: string | undefined;
  /** `<AdSystem version>`; omitted by default. */
  readonly adSystemVersion?: string | undefined;
  /** `<UniversalAdId idRegistry>`; default "adsrv" (the id is adsrv's own ad id). */
  readonly idRegistry?: string | undefined;
}

/** The per-ad parts of a document: `head` + per-request middle + `tail`. */
export interface PreparedVast {
  readonly id: string;
  /** From the XML declaration to `</AdSystem>`. */
  readonly head: string;
  /** From `</AdServingId>` to the end. */
  readonly tail: string;
}

const XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>\n';
const VAST_OPEN = `<VAST xmlns="${VAST_NAMESPACE}" version="4.2">`;

/**
 * `xs:time` text for a duration in seconds (`HH:MM:SS.mmm`). Not a finite number in
 * (0, 86400): the 30 s default. Rounded to the millisecond, at least 1 ms.
 */
export function formatDuration(seconds: number | undefined): string {
  const s =
    seconds !== undefined && Number.isFinite(seconds) && seconds > 0 && seconds < 86_400
      ? seconds
      : DEFAULT_DURATION_SECONDS;
  const totalMs = Math.min(86_399_999, Math.max(1, Math.round(s * 1000)));
  const ms = totalMs % 1000;
  const totalS = Math.floor(totalMs / 1000);
  const hh = Math.floor(totalS / 3600);
  const mm = Math.floor((totalS % 3600) / 60);
  const ss = totalS % 60;
  return `${pad2(hh)}:${pad2(mm)}:${pad2(ss)}.${String(ms).padStart(3, "0")}`;
}

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

function dimension(value: number | undefined, fallback: number): number {
  return value !== undefined && Number.isSafeInteger(value) && value >= 0 ? value : fallback;
}

/** Builds the per-ad parts once (at snapshot time or on first use). */
export function prepareVast(ad: VastAd, options: VastOptions = {}): PreparedVast {
  const id = escapeText(ad.id);
  const idAttr = escapeAttr(ad.id);
  const system = escapeText(options.adSystem ?? DEFAULT_AD_SYSTEM);
  const systemVersion =
    options.adSystemVersion === undefined ? "" : ` version="${escapeAttr(options.adSystemVersion)}"`;
  const registry = escapeAttr(options.idRegistry ?? DEFAULT_ID_REGISTRY);
  const mime = escapeAttr(ad.mime_type ?? DEFAULT_MIME_TYPE);
  const width = dimension(ad.width, DEFAULT_WIDTH);
  const height = dimension(ad.height, DEFAULT_HEIGHT);
  const head = `${XML_DECL}${VAST_OPEN}<Ad id="${idAttr}"><InLine><AdSystem${systemVersion}>${system}</AdSystem>`;
  const tail =
    `</AdServingId><AdTitle>${id}</AdTitle><Creatives><Creative id="${idAttr}" adId="${idAttr}"><Linear>` +
    `<Duration>${formatDuration(ad.duration)}</Duration><MediaFiles>` +
    `<MediaFile delivery="progressive" type="${mime}" width="${width}" height="${height}">` +
    `${cdata(toAnyUri(ad.video_url))}</MediaFile></MediaFiles></Linear>` +
    `<UniversalAdId idRegistry="${registry}">${id}</UniversalAdId></Creative></Creatives></InLine></Ad></VAST>\n`;
  return { id: ad.id, head, tail };
}

/** The full document from prepared parts: escapes only the per-request values. */
export function renderPrepared(prepared: PreparedVast, request: VastRequest): string {
  const error = request.errorUrl === undefined ? "" : `<Error>${cdata(toAnyUri(request.errorUrl))}</Error>`;
  return `${prepared.head}${error}<Impression>${cdata(toAnyUri(request.impressionUrl))}</Impression><AdServingId>${escapeText(request.adServingId)}${prepared.tail}`;
}

/** One-shot rendering (tests, tools): `prepareVast` + `renderPrepared`. */
export function renderVast(ad: VastAd, ctx: VastRequest & VastOptions): string {
  return renderPrepared(prepareVast(ad, ctx), ctx);
}

/**
 * The Error-only document for no fill. With `errorUrl`, that URL (it may carry the reason);
 * otherwise `urn:adsrv:no-fill:<reason>`. Documents without `errorUrl` are memoized per reason.
 */
export function renderNoFill(reason: string, errorUrl?: string): string {
  if (errorUrl !== undefined) return noFillDocument(errorUrl);
  let doc = noFillMemo.get(reason);
  if (doc === undefined) {
    doc = noFillDocument(noFillUrn(reason));
    if (noFillMemo.size < NO_FILL_MEMO_MAX) noFillMemo.set(reason, doc);
  }
  return doc;
}

/** The URN that names a no-fill reason in the default no-fill document. */
export function noFillUrn(reason: string): string {
  return `urn:adsrv:no-fill:${encodeURIComponent(reason.replace(INVALID_SURROGATE, "\uFFFD"))}`;
}

const INVALID_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
const NO_FILL_MEMO_MAX = 32;
const noFillMemo = new Map<string, string>();

function noFillDocument(url: string): string {
  return `${XML_DECL}${VAST_OPEN}<Error>${cdata(toAnyUri(url))}</Error></VAST>\n`;
}

/** Where the cache reads ads from: a snapshot's ad table (src/catalog/table.ts). */
export interface VastSource {
  /** Ad `i` as an object. */
  at(i: number): VastAd;
}

/** A bounded map of prepared ads, per ad table (a new snapshot's table is a new object). */
export interface VastCache {
  /** The prepared parts of ad `i` of `ads`, built on first use. */
  get(ads: VastSource, i: number): PreparedVast;
  /** Prepared ads held for the table used last. */
  readonly size: number;
  clear(): void;
}

/**
 * Prepares ads on first use and keeps at most `maxEntries` per table (oldest first out). Keyed
 * by table, then ad number, so ads of a replaced catalog are never returned for a new one; a
 * replaced table's cache goes with it.
 */
export function createVastCache(options: VastOptions & { readonly maxEntries?: number } = {}): VastCache {
  const max = Math.max(1, Math.floor(options.maxEntries ?? 65_536));
  interface PerTable {
    readonly map: Map<number, PreparedVast>;
    // Insertion order in a ring: evicting through `map.keys()` gets slow once a Map holds many
    // deleted entries (measured: ~100 µs per get with 50 % misses on Bun 1.4.5).
    readonly ring: number[];
    next: number;
  }
  let tables = new WeakMap<VastSource, PerTable>();
  let last: PerTable | null = null;
  return {
    get(ads, i) {
      let table = tables.get(ads);
      if (table === undefined) {
        table = { map: new Map(), ring: [], next: 0 };
        tables.set(ads, table);
      }
      last = table;
      const { map, ring } = table;
      let prepared = map.get(i);
      if (prepared === undefined) {
        prepared = prepareVast(ads.at(i), options);
        if (ring.length < max) {
          ring.push(i);
        } else {
          map.delete(ring[table.next] as number);
          ring[table.next] = i;
          table.next = (table.next + 1) % max;
        }
        map.set(i, prepared);
      }
      return prepared;
    },
    get size() {
      return last?.map.size ?? 0;
    },
    clear() {
      tables = new WeakMap();
      last = null;
    },
  };
}
