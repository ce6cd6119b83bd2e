/**
 * SHA-256 as hex, for digests off the hot path: the catalog documents the fleet shares. One
 * native hasher a call (the hot path's HMAC avoids that: hmac.ts).
 * @module
 */

/** SHA-256 of a text's UTF-8 bytes, or of bytes, as lowercase hex. */
export function sha256Hex(data: string | Uint8Array): string {
  return new Bun.CryptoHasher("sha256").update(data).digest("hex");
}
