/**
 * Strict, hand-written parsing of the `/ad_request` query string (the hot path: no `new URL`).
 *
 * `country` and `lang` are required, once each, and must be known codes; they come back in
 * canonical form. Other parameters are ignored. A malformed percent-escape is an error.
 * @module
 */
import { normalizeCountry, normalizeLang } from "../codes/normalize.ts";
import { isValidPlayerId } from "../store/players.ts";

export interface AdQuery {
  readonly country: string;
  readonly lang: string;
  /** Opaque player id (1-128 printable ASCII), or null when not given. */
  readonly playerId: string | null;
}

/** A 400: which parameter and what is wrong with it. */
export interface ParamError {
  readonly param: string;
  readonly detail: string;
}

export type QueryResult =
  | { readonly ok: true; readonly query: AdQuery }
  | { readonly ok: false; readonly error: ParamError };

const MAX_SHOWN = 64;

function decode(raw: string): string | null {
  if (raw.indexOf("%") < 0 && raw.indexOf("+") < 0) return raw;
  try {
    return decodeURIComponent(raw.replaceAll("+", " "));
  } catch {
    return null;
  }
}

/** Shows user input in an error detail: escaped by JSON, cut to a bounded length. */
export function shown(value: string): string {
  return JSON.stringify(value.length > MAX_SHOWN ? `${value.slice(0, MAX_SHOWN)}…` : value);
}

function fail(param: string, detail: string): QueryResult {
  return { ok: false, error: { param, detail } };
}

/** Parses the part of a URL after `?` (or "" when there is none). */
export function parseAdQuery(search: string): QueryResult {
  let country: string | undefined;
  let lang: string | undefined;
  let playerId: string | undefined;
  let start = 0;
  while (start <= search.length) {
    let end = search.indexOf("&", start);
    if (end < 0) end = search.length;
    const eq = search.indexOf("=", start);
    const hasValue = eq >= 0 && eq < end;
    const rawKey = search.slice(start, hasValue ? eq : end);
    start = end + 1;
    if (rawKey.length === 0) continue;
    const key = decode(rawKey);
    if (key === null) return fail(rawKey.slice(0, MAX_SHOWN), "malformed percent-encoding in parameter name");
    if (key !== "country" && key !== "lang" && key !== "player_id") continue;
    const value = hasValue ? decode(search.slice(eq + 1, end)) : "";
    if (value === null) return fail(key, "malformed percent-encoding");
    if (key === "country") {
      if (country !== undefined) return fail(key, "country is given more than once");
      country = value;
    } else if (key === "player_id") {
      if (playerId !== undefined) return fail(key, "player_id is given more than once");
      playerId = value;
    } else {
      if (lang !== undefined) return fail(key, "lang is given more than once");
      lang = value;
    }
  }
  if (country === undefined || country === "")
    return fail("country", "country is required (ISO 3166-1 alpha-2)");
  if (lang === undefined || lang === "") return fail("lang", "lang is required (ISO 639 code or BCP 47 tag)");
  const c = normalizeCountry(country);
  if (c === null) return fail("country", `${shown(country)} is not an ISO 3166-1 alpha-2 country code`);
  const l = normalizeLang(lang);
  if (l === null) return fail("lang", `${shown(lang)} is not an ISO 639 language code or BCP 47 tag`);
  if (playerId !== undefined && !isValidPlayerId(playerId)) {
    return fail("player_id", "player_id must be 1-128 printable ASCII characters (no spaces)");
  }
  return { ok: true, query: { country: c, lang: l, playerId: playerId ?? null } };
}

const MAYBE_KEY = /api(_|%5f)key/i;

/**
 * Whether the query names an `api_key` parameter (any case, percent-encoded or not): a key in
 * a URL leaks into logs. Cheap when it does not (one regex over the string).
 */
export function hasApiKeyParam(search: string): boolean {
  if (!MAYBE_KEY.test(search)) return false;
  for (const part of search.split("&")) {
    const eq = part.indexOf("=");
    const raw = eq < 0 ? part : part.slice(0, eq);
    let name: string;
    try {
      name = decodeURIComponent(raw.replaceAll("+", " "));
    } catch {
      name = raw;
    }
    if (name.toLowerCase() === "api_key") return true;
  }
  return false;
}

/** The query string of a request URL (after `?`, before `#`), without allocating a URL. */
export function searchOf(url: string): string {
  const q = url.indexOf("?");
  if (q < 0) return "";
  const hash = url.indexOf("#", q);
  return hash < 0 ? url.slice(q + 1) : url.slice(q + 1, hash);
}
