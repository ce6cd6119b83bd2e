/**
 * Signed impression tokens (issue 7): the `t` of `/impression?t=TOKEN`, minted with each
 * decision and checked when the player reports that the ad started.
 *
 * A token is `<payload>.<mac>`, both base64url without padding (URL-safe, no escaping needed):
 *
 * - payload: the UTF-8 JSON array `[1, adId, decidedAtMs, nonce, playerHash|null, country|null, lang|null]`
 *   (trailing nulls dropped); the leading 1 is the format version.
 * - mac: HMAC-SHA256 over `"adsrv-impression-v1." + payload`, truncated to 128 bits (as in
 *   RFC 4868), so 22 characters. It doubles as the token id the ledger counts once.
 *
 * A typical token is about 100 characters. The payload is signed, not encrypted: pass a hash of
 * the player id, never the id itself. Verification refuses any non-canonical base64url (so one
 * token has exactly one spelling and cannot be replayed under another), compares MACs in
 * constant time, tries the current key then any previous keys (rotation), and only then parses
 * the payload. A token expires `ttlSeconds` after its decision time.
 * @module
 */
import { timingSafeEqual } from "node:crypto";
import { HmacSha256 } from "../crypto/hmac.ts";

export interface ImpressionClaims {
  readonly adId: string;
  /** When the decision was taken (epoch ms); the impression is counted in that UTC hour. */
  readonly decidedAtMs: number;
  /** Unique per decision (see `newNonce`); may double as the VAST `AdServingId`. */
  readonly nonce: string;
  /** A hash of `player_id`, when the request had one. */
  readonly playerHash?: string | undefined;
  /** The decision's canonical country and language, for the stats. */
  readonly country?: string | undefined;
  readonly lang?: string | undefined;
}

export interface VerifiedImpression extends ImpressionClaims {
  /** Unique per token (its MAC, 22 base64url characters): the key the ledger counts once. */
  readonly tokenId: string;
  /** `decidedAtMs + ttl`: the ledger may forget the token after this. */
  readonly expiresAtMs: number;
}

export type VerifyFailure = "malformed" | "bad_signature" | "expired";

export type VerifyResult =
  | { readonly ok: true; readonly claims: VerifiedImpression }
  | { readonly ok: false; readonly reason: VerifyFailure };

export interface SignerOptions {
  /** How long a token stays valid after its decision time. */
  readonly ttlSeconds: number;
  /** Keys still accepted for verification (after a rotation); never used to sign. */
  readonly previousKeys?: readonly Uint8Array[];
}

export interface ImpressionSigner {
  sign(claims: ImpressionClaims): string;
  verify(token: string, nowMs: number): VerifyResult;
  readonly ttlSeconds: number;
}

/** Keys shorter than this are refused: HMAC-SHA256 wants 256 bits of key. */
export const MIN_KEY_BYTES = 32;
/** Longer tokens are `malformed` before any work. */
export const MAX_TOKEN_LENGTH = 1024;
const MAX_FIELD = 128;
const MAC_CHARS = 22;
const CONTEXT = "adsrv-impression-v1.";
const VERSION = 1;
const TOKEN_SHAPE = /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{22})$/;

/** 96 random bits as 16 base64url characters: a fresh nonce per decision. */
export function newNonce(): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(12))).toString("base64url");
}

/**
 * Nonces for the hot path: 48 random bits per process, then a decimal counter (unique per
 * process, and across processes with overwhelming probability), without a random draw per
 * request. Decimal: `toString(36)` cost about 0.3 µs a call here.
 */
export function nonceSequence(): () => string {
  const prefix = Buffer.from(crypto.getRandomValues(new Uint8Array(6))).toString("base64url");
  let n = 0;
  return () => {
    n = n + 1 < Number.MAX_SAFE_INTEGER ? n + 1 : 0;
    return prefix + n;
  };
}

function checkField(value: string | undefined, name: string, required: boolean): void {
  if (value === undefined) {
    if (required) throw new RangeError(`${name} is required`);
    return;
  }
  if (typeof value !== "string" || value.length === 0 || value.length > MAX_FIELD) {
    throw new RangeError(`${name} must be a string of 1-${MAX_FIELD} characters`);
  }
}

/** The token id: the first 22 base64url characters (132 bits) of the MAC of the payload text. */
function macOf(hmac: HmacSha256, payload: string): string {
  return hmac.digest(payload).toString("base64url", 0, 17).slice(0, MAC_CHARS);
}

/**
 * The payload's JSON bytes, written here and then base64url-encoded into the MAC's scratch, so a
 * token makes one string (the token) instead of five (JSON, payload, MAC, their joins). A field
 * is at most 128 UTF-16 units: as JSON at most 770 bytes (`\u00XX` escapes), 7 fields fit.
 */
const jsonScratch = Buffer.alloc(8192);

/** Writes `"s"` at `at` if JSON writes `s` as-is (printable ASCII, no `"` or `\`); else -1. */
function putPlain(buf: Uint8Array, at: number, s: string): number {
  buf[at++] = 0x22;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return -1;
    buf[at++] = c;
  }
  buf[at++] = 0x22;
  return at;
}

/** Writes `,` then the field (`null` when absent); -1 if it is not plain. */
function putField(buf: Uint8Array, at: number, s: string | undefined): number {
  buf[at++] = 0x2c;
  if (s !== undefined) return putPlain(buf, at, s);
  buf[at] = 0x6e; // null
  buf[at + 1] = 0x75;
  buf[at + 2] = 0x6c;
  buf[at + 3] = 0x6c;
  return at + 4;
}

/** Writes the decimal digits of a safe non-negative integer. */
function putInt(buf: Uint8Array, at: number, value: number): number {
  let digits = 1;
  for (let v = value; v >= 10; v = Math.floor(v / 10)) digits++;
  let v = value;
  for (let i = at + digits - 1; i >= at; i--) {
    buf[i] = 0x30 + (v % 10);
    v = Math.floor(v / 10);
  }
  return at + digits;
}

/**
 * The payload's JSON, `[1, adId, decidedAtMs, nonce, playerHash, country, lang]` with trailing
 * absent fields dropped and inner ones `null`, as UTF-8 in `jsonScratch`; returns its length.
 * Written byte by byte when every string is plain (the same bytes as `JSON.stringify`, tested),
 * else `JSON.stringify`.
 */
function payloadJson(c: ImpressionClaims): number {
  const { adId, decidedAtMs, nonce, playerHash, country, lang } = c;
  const last = lang !== undefined ? 6 : country !== undefined ? 5 : playerHash !== undefined ? 4 : 3;
  const buf = jsonScratch;
  buf[0] = 0x5b; // [1,
  buf[1] = 0x30 + VERSION;
  buf[2] = 0x2c;
  let at = putPlain(buf, 3, adId);
  if (at >= 0) {
    buf[at++] = 0x2c;
    at = putInt(buf, at, decidedAtMs);
    buf[at++] = 0x2c;
    at = putPlain(buf, at, nonce);
  }
  if (at >= 0 && last >= 4) at = putField(buf, at, playerHash);
  if (at >= 0 && last >= 5) at = putField(buf, at, country);
  if (at >= 0 && last === 6) at = putField(buf, at, lang);
  if (at >= 0) {
    buf[at] = 0x5d; // ]
    return at + 1;
  }
  const fields = [VERSION, adId, decidedAtMs, nonce, playerHash ?? null, country ?? null, lang ?? null];
  return buf.write(JSON.stringify(fields.slice(0, last + 1)), 0, "utf8");
}

const BASE64URL = Uint8Array.from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", (c) =>
  c.charCodeAt(0),
);

/** Unpadded base64url of `src[0, length)` written at `dst[at]` (as `Buffer`'s); returns the end. */
function base64urlInto(src: Uint8Array, length: number, dst: Uint8Array, at: number): number {
  const alphabet = BASE64URL;
  let i = 0;
  for (; i + 2 < length; i += 3) {
    const v = ((src[i] as number) << 16) | ((src[i + 1] as number) << 8) | (src[i + 2] as number);
    dst[at] = alphabet[v >>> 18] as number;
    dst[at + 1] = alphabet[(v >>> 12) & 63] as number;
    dst[at + 2] = alphabet[(v >>> 6) & 63] as number;
    dst[at + 3] = alphabet[v & 63] as number;
    at += 4;
  }
  const rest = length - i;
  if (rest > 0) {
    const v = ((src[i] as number) << 16) | (rest === 2 ? (src[i + 1] as number) << 8 : 0);
    dst[at++] = alphabet[v >>> 18] as number;
    dst[at++] = alphabet[(v >>> 12) & 63] as number;
    if (rest === 2) dst[at++] = alphabet[(v >>> 6) & 63] as number;
  }
  return at;
}

/** Decodes canonical unpadded base64url, or null (a spelling `toString` would not produce). */
function decodeCanonical(text: string): Buffer | null {
  const bytes = Buffer.from(text, "base64url");
  return bytes.toString("base64url") === text ? bytes : null;
}

function optionalString(value: unknown): string | undefined | null {
  if (value === undefined || value === null) return undefined;
  return typeof value === "string" && value.length > 0 && value.length <= MAX_FIELD ? value : null;
}

function parsePayload(bytes: Buffer): ImpressionClaims | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString("utf8"));
  } catch {
    return null;
  }
  if (!Array.isArray(parsed) || parsed[0] !== VERSION || parsed.length < 4 || parsed.length > 7) return null;
  const [, adId, decidedAtMs, nonce, playerHash, country, lang] = parsed as unknown[];
  if (typeof adId !== "string" || adId.length === 0 || adId.length > MAX_FIELD) return null;
  if (typeof decidedAtMs !== "number" || !Number.isSafeInteger(decidedAtMs) || decidedAtMs < 0) return null;
  if (typeof nonce !== "string" || nonce.length === 0 || nonce.length > MAX_FIELD) return null;
  const p = optionalString(playerHash);
  const c = optionalString(country);
  const l = optionalString(lang);
  if (p === null || c === null || l === null) return null;
  const claims: { -readonly [K in keyof ImpressionClaims]: ImpressionClaims[K] } = {
    adId,
    decidedAtMs,
    nonce,
  };
  if (p !== undefined) claims.playerHash = p;
  if (c !== undefined) claims.country = c;
  if (l !== undefined) claims.lang = l;
  return claims;
}

export function createImpressionSigner(key: Uint8Array, options: SignerOptions): ImpressionSigner {
  const keys = [key, ...(options.previousKeys ?? [])];
  for (const k of keys) {
    if (!(k instanceof Uint8Array) || k.byteLength < MIN_KEY_BYTES) {
      throw new RangeError(`impression keys must be at least ${MIN_KEY_BYTES} bytes`);
    }
  }
  const { ttlSeconds } = options;
  if (!Number.isFinite(ttlSeconds) || ttlSeconds <= 0) throw new RangeError("ttlSeconds must be > 0");
  const ttlMs = Math.round(ttlSeconds * 1000);
  // Private copies: a caller that later zeroes or reuses its buffer does not change ours.
  const signMac = new HmacSha256(Uint8Array.from(key), CONTEXT);
  const verifyMacs = keys.map((k) => new HmacSha256(Uint8Array.from(k), CONTEXT));

  return {
    ttlSeconds,
    sign(claims) {
      checkField(claims.adId, "adId", true);
      checkField(claims.nonce, "nonce", true);
      checkField(claims.playerHash, "playerHash", false);
      checkField(claims.country, "country", false);
      checkField(claims.lang, "lang", false);
      if (!Number.isSafeInteger(claims.decidedAtMs) || claims.decidedAtMs < 0) {
        throw new RangeError("decidedAtMs must be a non-negative integer (epoch ms)");
      }
      // payload = base64url(JSON) into the MAC's scratch, its MAC after it: one string at the end.
      const out = signMac.message;
      const end = base64urlInto(jsonScratch, payloadJson(claims), out, 0);
      const mac = signMac.digestScratch(end);
      out[end] = 0x2e; // .
      base64urlInto(mac, 17, out, end + 1);
      return out.toString("latin1", 0, end + 1 + MAC_CHARS);
    },
    verify(token, nowMs) {
      if (typeof token !== "string" || token.length > MAX_TOKEN_LENGTH) return MALFORMED;
      const shape = TOKEN_SHAPE.exec(token);
      if (shape === null) return MALFORMED;
      const payload = shape[1] as string;
      const tokenId = shape[2] as string;
      const bytes = decodeCanonical(payload);
      if (bytes === null) return MALFORMED;
      const given = Buffer.from(tokenId, "latin1");
      let valid = false;
      for (const m of verifyMacs)
        if (timingSafeEqual(Buffer.from(macOf(m, payload), "latin1"), given)) valid = true;
      if (!valid) return BAD_SIGNATURE;
      const claims = parsePayload(bytes);
      if (claims === null) return MALFORMED;
      const expiresAtMs = claims.decidedAtMs + ttlMs;
      if (nowMs >= expiresAtMs) return EXPIRED;
      return { ok: true, claims: { ...claims, tokenId, expiresAtMs } };
    },
  };
}

const MALFORMED: VerifyResult = Object.freeze({ ok: false, reason: "malformed" });
const BAD_SIGNATURE: VerifyResult = Object.freeze({ ok: false, reason: "bad_signature" });
const EXPIRED: VerifyResult = Object.freeze({ ok: false, reason: "expired" });

/** Chars of a MAC, exported for tests and for callers that size buffers. */
export const TOKEN_ID_LENGTH = MAC_CHARS;
