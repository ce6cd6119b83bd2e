/**
 * Catalog validation: untrusted JSON in, `{ ads, issues }` or a rejection out. Pure.
 *
 * An invalid entry is skipped with an issue; a document that is not `{"ads": [...]}`, or in
 * which every entry is invalid, is rejected whole. An empty `ads` list is a valid catalog.
 * @module
 */
import { normalizeCountry, normalizeLang } from "../codes/normalize.ts";
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

function field(entry: Record<string, unknown>, name: string, type: "string" | "number"): unknown {
  if (!Object.hasOwn(entry, name)) throw new EntryError("missing_field", name, `${name} is required`);
  const value = entry[name];
  if (typeof value !== type) throw new EntryError("wrong_type", name, `${name} must be a ${type}`);
  return value;
}

function hour(entry: Record<string, unknown>, name: string, max: number): number {
  const value = field(entry, name, "number") as number;
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new EntryError("invalid_hour", name, `${name} must be an integer from 0 to ${max}`);
  }
  return value;
}

function isHttpUrl(raw: string): boolean {
  if (raw.length > MAX_URL || !/^https?:\/\/[\x21-\x7e]+$/i.test(raw)) return false;
  try {
    const url = new URL(raw);
    return (url.protocol === "http:" || url.protocol === "https:") && url.hostname !== "";
  } catch {
    return false;
  }
}

function validateEntry(raw: unknown): Ad {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new EntryError("not_object", null, "entry must be an object");
  }
  const entry = raw as Record<string, unknown>;
  const id = field(entry, "id", "string") as string;
  if (!ID.test(id)) throw new EntryError("invalid_id", "id", "id must be 1-128 printable ASCII characters");
  const videoUrl = field(entry, "video_url", "string") as string;
  if (!isHttpUrl(videoUrl)) {
    throw new EntryError("invalid_video_url", "video_url", "video_url must be an absolute http(s) URL");
  }
  const countryRaw = field(entry, "country", "string") as string;
  const country = normalizeCountry(countryRaw);
  if (country === null) {
    throw new EntryError("unknown_country", "country", "country is not an ISO 3166-1 alpha-2 code");
  }
  const langRaw = field(entry, "lang", "string") as string;
  const lang = normalizeLang(langRaw);
  if (lang === null) throw new EntryError("unknown_lang", "lang", "lang is not an ISO 639 code");
  const start = hour(entry, "start_hour", 23);
  const end = hour(entry, "end_hour", 24);
  return { id, video_url: videoUrl, country, lang, start_hour: start, end_hour: end };
}

function readableId(raw: unknown): string | null {
  if (typeof raw !== "object" || raw === null) return null;
  const id = (raw as Record<string, unknown>).id;
  return typeof id === "string" ? id.slice(0, 128) : null;
}

/** Validates a parsed catalog document. */
export function validateCatalog(doc: unknown): ValidationResult {
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
  const ads: Ad[] = [];
  const issues: Issue[] = [];
  const seen = new Set<string>();
  for (let index = 0; index < list.length; index++) {
    const raw: unknown = list[index];
    try {
      const ad = validateEntry(raw);
      if (seen.has(ad.id)) throw new EntryError("duplicate_id", "id", "id already used by an earlier entry");
      seen.add(ad.id);
      ads.push(ad);
    } catch (error) {
      if (!(error instanceof EntryError)) throw error;
      issues.push({
        index,
        id: readableId(raw),
        code: error.code,
        field: error.field,
        message: error.message,
      });
    }
  }
  if (list.length > 0 && ads.length === 0) {
    return { ok: false, code: "all_invalid", message: `all ${list.length} entries are invalid`, issues };
  }
  return { ok: true, ads, issues };
}

/** Parses JSON text and validates it. */
export function parseCatalog(text: string): ValidationResult {
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
  return validateCatalog(doc);
}
