/**
 * The catalog's data types.
 * @module
 */

/** One validated ad, with codes in canonical form. */
export interface Ad {
  readonly id: string;
  readonly video_url: string;
  /** ISO 3166-1 alpha-2, lower case. */
  readonly country: string;
  /** ISO 639-2/T. */
  readonly lang: string;
  readonly start_hour: number;
  readonly end_hour: number;
  /** Per-ad frequency cap (serves per player per window); overrides --frequency-cap. */
  readonly frequency_cap?: number;
  /** Per-ad rolling window of the cap, seconds; overrides --frequency-window. */
  readonly frequency_window?: number;
  /** VAST media details (optional; defaults in src/vast/render.ts). */
  readonly duration?: number;
  readonly mime_type?: string;
  readonly width?: number;
  readonly height?: number;
}

/** Why a catalog entry was skipped. */
export type IssueCode =
  | "not_object"
  | "missing_field"
  | "wrong_type"
  | "invalid_id"
  | "duplicate_id"
  | "invalid_video_url"
  | "unknown_country"
  | "unknown_lang"
  | "invalid_hour"
  | "invalid_media"
  | "invalid_frequency";

/** One skipped entry: its position in `ads`, its id when it had a readable one, and why. */
export interface Issue {
  readonly index: number;
  readonly id: string | null;
  readonly code: IssueCode;
  readonly field: string | null;
  readonly message: string;
}

/** Why a whole document was refused. */
export type RejectCode = "malformed_json" | "wrong_shape" | "all_invalid" | "too_large";

export type ValidationResult =
  | { readonly ok: true; readonly ads: readonly Ad[]; readonly issues: readonly Issue[] }
  | {
      readonly ok: false;
      readonly code: RejectCode;
      readonly message: string;
      readonly issues: readonly Issue[];
    };
