/**
 * Reports over a catalog for the operator tools (`adsrv catalog validate|preview`): pure
 * functions over the server's own validation result and snapshot index, so a preview shows
 * exactly what a server built from the same document would serve.
 * @module
 */
import { eligible, type NoFillReason } from "../decision/decide.ts";
import { hourMask } from "../decision/hours.ts";
import { bucketAds, catalogVersion, type Snapshot } from "./snapshot.ts";
import type { Issue, IssueCode, RejectCode, ValidationResult } from "./types.ts";

export const HOURS = 24;
/** Every hour of the day: the mask of an all-day window. */
export const FULL_DAY = (1 << HOURS) - 1;

/** How many invalid entries had one reason. */
export interface ReasonCount {
  readonly code: IssueCode;
  readonly count: number;
}

/** How many valid ads target one (country, language). */
export interface PairCount {
  readonly country: string;
  readonly lang: string;
  readonly ads: number;
}

/** What `adsrv catalog validate` reports. */
export interface CatalogSummary {
  /** The document is accepted and every entry is valid. */
  readonly ok: boolean;
  /** A server would accept the document (invalid entries skipped). */
  readonly accepted: boolean;
  readonly rejected: { readonly code: RejectCode; readonly message: string } | null;
  /** Entries in `ads`; null when the document has no readable `ads` list. */
  readonly entries: number | null;
  readonly valid: number;
  readonly invalid: number;
  /** Most frequent reason first, then by code. */
  readonly byReason: readonly ReasonCount[];
  /** Canonical codes (ISO 3166-1 alpha-2 lower case; ISO 639-2/T), sorted. */
  readonly countries: readonly string[];
  readonly languages: readonly string[];
  readonly pairs: readonly PairCount[];
  readonly issues: readonly Issue[];
  /** The version a server would report in /readyz (`catalog_version`), when accepted. */
  readonly version: string | null;
}

function countReasons(issues: readonly Issue[]): ReasonCount[] {
  const counts = new Map<IssueCode, number>();
  for (const issue of issues) counts.set(issue.code, (counts.get(issue.code) ?? 0) + 1);
  return [...counts]
    .map(([code, count]) => ({ code, count }))
    .sort((a, b) => b.count - a.count || (a.code < b.code ? -1 : a.code > b.code ? 1 : 0));
}

const byKey = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Summarises a validation result. */
export function summarize(result: ValidationResult): CatalogSummary {
  const byReason = countReasons(result.issues);
  if (!result.ok) {
    const listed = result.code === "all_invalid";
    return {
      ok: false,
      accepted: false,
      rejected: { code: result.code, message: result.message },
      entries: listed ? result.issues.length : null,
      valid: 0,
      invalid: result.issues.length,
      byReason,
      countries: [],
      languages: [],
      pairs: [],
      issues: result.issues,
      version: null,
    };
  }
  const countries = new Set<string>();
  const languages = new Set<string>();
  const pairs = new Map<string, PairCount>();
  for (const ad of result.ads) {
    countries.add(ad.country);
    languages.add(ad.lang);
    const key = `${ad.country}\t${ad.lang}`;
    const pair = pairs.get(key);
    pairs.set(key, { country: ad.country, lang: ad.lang, ads: (pair?.ads ?? 0) + 1 });
  }
  return {
    ok: result.issues.length === 0,
    accepted: true,
    rejected: null,
    entries: result.ads.length + result.issues.length,
    valid: result.ads.length,
    invalid: result.issues.length,
    byReason,
    countries: [...countries].sort(byKey),
    languages: [...languages].sort(byKey),
    pairs: [...pairs.values()].sort((a, b) => byKey(a.country, b.country) || byKey(a.lang, b.lang)),
    issues: result.issues,
    version: catalogVersion(result.ads),
  };
}

/** One ad as the preview shows it. */
export interface PreviewAd {
  readonly id: string;
  readonly video_url: string;
  readonly start_hour: number;
  readonly end_hour: number;
  /** Bit h set: the server's index lists this ad at UTC hour h. */
  readonly mask: number;
}

/** The ads of one (country, language): rows of the 24-hour grid. */
export interface PreviewGroup {
  readonly country: string;
  readonly lang: string;
  /** In catalog order (the rotation order). */
  readonly ads: readonly PreviewAd[];
  /** Number of eligible ads at each UTC hour 0–23. */
  readonly live: readonly number[];
}

/** Canonical codes to keep (null: all). */
export interface PreviewFilter {
  readonly country: string | null;
  readonly lang: string | null;
}

/**
 * The (country, language) groups of a snapshot that pass the filter, sorted by country then
 * language. Which hours each ad covers is read back from the snapshot's index, not recomputed.
 */
export function previewGroups(snapshot: Snapshot, filter: PreviewFilter): PreviewGroup[] {
  const groups: PreviewGroup[] = [];
  const countries = [...snapshot.index.keys()].sort(byKey);
  for (const country of countries) {
    if (filter.country !== null && filter.country !== country) continue;
    const byLang = snapshot.index.get(country);
    if (byLang === undefined) continue;
    for (const lang of [...byLang.keys()].sort(byKey)) {
      if (filter.lang !== null && filter.lang !== lang) continue;
      const bucket = byLang.get(lang);
      if (bucket === undefined) continue;
      const masks = new Map<number, number>();
      const live: number[] = [];
      for (let h = 0; h < HOURS; h++) {
        const entries = bucket.hours[h] ?? [];
        live.push(entries.length);
        for (const i of entries) masks.set(i, (masks.get(i) ?? 0) | (1 << h));
      }
      const table = snapshot.ads;
      const ads: PreviewAd[] = bucketAds(bucket).map((i) => ({
        id: table.id(i),
        video_url: table.videoUrl(i),
        start_hour: table.startHour(i),
        end_hour: table.endHour(i),
        mask: masks.get(i) ?? 0,
      }));
      groups.push({ country, lang, ads, live });
    }
  }
  return groups;
}

export type Rotation =
  | { readonly kind: "ads"; readonly ids: readonly string[] }
  | { readonly kind: "nofill"; readonly reason: NoFillReason };

/**
 * The order in which a server serves the ads of (country, lang) at UTC hour `hour`, starting
 * from a fresh snapshot (tick 0): the decision's own `eligible` lookup.
 */
export function rotationAt(snapshot: Snapshot, country: string, lang: string, hour: number): Rotation {
  const found = eligible(snapshot, country, lang, hour);
  if (found.kind === "nofill") return found;
  return { kind: "ads", ids: Array.from(found.ads, (i) => snapshot.ads.id(i)) };
}

/** 24 cells, one per hour: `on` where the mask has the hour, `off` elsewhere. */
export function hourCells(mask: number, on = "█", off = "·"): string {
  let out = "";
  for (let h = 0; h < HOURS; h++) out += mask & (1 << h) ? on : off;
  return out;
}

/** 24 cells of counts: `·` for none, the digit up to 9, `+` above. */
export function countCells(live: readonly number[]): string {
  let out = "";
  for (let h = 0; h < HOURS; h++) {
    const n = live[h] ?? 0;
    out += n === 0 ? "·" : n > 9 ? "+" : String(n);
  }
  return out;
}

/** The two header lines over a grid: tens and units of each hour. */
export function hourHeader(): readonly [string, string] {
  let tens = "";
  let units = "";
  for (let h = 0; h < HOURS; h++) {
    tens += Math.floor(h / 10);
    units += h % 10;
  }
  return [tens, units];
}

/** A line with `mark` under hour `hour` (for the current UTC hour). */
export function markerLine(hour: number, mark = "^"): string {
  return `${" ".repeat(hour)}${mark}`;
}

const hh = (h: number): string => String(h).padStart(2, "0");

/** `01:00-14:00`, `22:00-03:00`, `12:00-24:00`, or `all day`. */
export function windowLabel(start: number, end: number): string {
  if (hourMask(start, end) === FULL_DAY) return "all day";
  return `${hh(start)}:00-${hh(end === 0 ? 24 : end)}:00`;
}
