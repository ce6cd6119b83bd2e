/**
 * The optional per-ad catalog fields used in VAST documents (issue 7): `duration` (seconds),
 * `mime_type`, `width`, `height`. Pure; called by the catalog validator for each entry.
 *
 * Absent fields (missing or `undefined`) are left out of `media` and the VAST renderer uses its
 * defaults (30 s, `video/mp4`, 1280 × 720). A present field of the wrong type (`null`
 * included) or out of range makes the entry invalid, naming the field.
 * @module
 */

export interface MediaFields {
  /** Seconds, 0 < duration ≤ 3600 (fractions allowed). */
  readonly duration?: number;
  /** `video/<subtype>`, lower case. */
  readonly mime_type?: string;
  /** Pixels, integer 1–8192. */
  readonly width?: number;
  readonly height?: number;
}

/** `wrong_type` is the catalog's existing issue code; `invalid_media` is a value out of range. */
export type MediaIssueCode = "wrong_type" | "invalid_media";

export type MediaResult =
  | { readonly ok: true; readonly media: MediaFields }
  | {
      readonly ok: false;
      readonly field: keyof MediaFields;
      readonly code: MediaIssueCode;
      readonly message: string;
    };

export const MAX_DURATION_SECONDS = 3600;
export const MAX_DIMENSION = 8192;
export const MIME_TYPE = /^video\/[a-z0-9.+-]+$/;
const MAX_MIME_LENGTH = 100;

const NONE: MediaResult = Object.freeze({ ok: true, media: Object.freeze({}) });

function own(entry: Record<string, unknown>, key: string): unknown {
  return Object.hasOwn(entry, key) ? entry[key] : undefined;
}

function fail(field: keyof MediaFields, code: MediaIssueCode, message: string): MediaResult {
  return { ok: false, field, code, message };
}

function dimension(value: unknown, field: "width" | "height"): MediaResult | number {
  if (typeof value !== "number") return fail(field, "wrong_type", `${field} must be a number`);
  if (!Number.isInteger(value) || value < 1 || value > MAX_DIMENSION) {
    return fail(field, "invalid_media", `${field} must be an integer from 1 to ${MAX_DIMENSION}`);
  }
  return value;
}

/** Validates the optional media fields of one catalog entry (an object already). */
export function validateMediaFields(entry: Record<string, unknown>): MediaResult {
  const duration = own(entry, "duration");
  const mime = own(entry, "mime_type");
  const width = own(entry, "width");
  const height = own(entry, "height");
  if (duration === undefined && mime === undefined && width === undefined && height === undefined)
    return NONE;

  const media: { duration?: number; mime_type?: string; width?: number; height?: number } = {};
  if (duration !== undefined) {
    if (typeof duration !== "number") return fail("duration", "wrong_type", "duration must be a number");
    if (!Number.isFinite(duration) || duration <= 0 || duration > MAX_DURATION_SECONDS) {
      return fail(
        "duration",
        "invalid_media",
        `duration must be a number of seconds above 0 and at most ${MAX_DURATION_SECONDS}`,
      );
    }
    media.duration = duration;
  }
  if (mime !== undefined) {
    if (typeof mime !== "string") return fail("mime_type", "wrong_type", "mime_type must be a string");
    if (mime.length > MAX_MIME_LENGTH || !MIME_TYPE.test(mime)) {
      return fail("mime_type", "invalid_media", "mime_type must look like video/mp4 (lower case)");
    }
    media.mime_type = mime;
  }
  if (width !== undefined) {
    const w = dimension(width, "width");
    if (typeof w !== "number") return w;
    media.width = w;
  }
  if (height !== undefined) {
    const h = dimension(height, "height");
    if (typeof h !== "number") return h;
    media.height = h;
  }
  return { ok: true, media };
}
