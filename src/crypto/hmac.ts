/**
 * HMAC-SHA256 (RFC 2104) for the hot path: two one-shot `Bun.SHA256.hash` calls into buffers
 * made once per key, so no native hasher object per message. A hasher per message
 * (`CryptoHasher.copy()` or `new CryptoHasher(alg, key)`) cost a quarter of the decision route's
 * throughput under load, mostly in garbage of native objects. Synchronous and not re-entrant,
 * like everything on the event loop: the digest buffer is reused by the next call.
 * @module
 */

const BLOCK = 64;
/** Messages up to this many bytes (after the prefix) are hashed from the scratch buffer. */
const SCRATCH = 8192;

export class HmacSha256 {
  /** ipad-key ‖ prefix ‖ message (the inner hash's input). */
  private readonly inner = Buffer.alloc(SCRATCH);
  /** opad-key ‖ inner digest (the outer hash's input). */
  private readonly outer = Buffer.alloc(BLOCK + 32);
  private readonly innerDigest = this.outer.subarray(BLOCK);
  private readonly out = Buffer.alloc(32);
  /** `inner.subarray(0, end)` by `end`, made once per length (a view is an allocation). */
  private readonly views: Buffer[] = [];
  private readonly start: number;
  /**
   * Where a caller may write a message as bytes, for `digestScratch`: a view after the key and
   * the prefix (which it cannot reach). Bytes past the message are not hashed (a caller may keep
   * other output there); everything in it is overwritten by the next message.
   */
  readonly message: Buffer;

  /** `prefix` (UTF-8) is prepended to every message, hashed from a precomputed copy. */
  constructor(key: Uint8Array | string, prefix = "") {
    const bytes = typeof key === "string" ? Buffer.from(key, "utf8") : key;
    const k = bytes.byteLength > BLOCK ? new Uint8Array(Bun.SHA256.hash(bytes).buffer, 0, 32) : bytes;
    for (let i = 0; i < BLOCK; i++) {
      this.inner[i] = (k[i] ?? 0) ^ 0x36;
      this.outer[i] = (k[i] ?? 0) ^ 0x5c;
    }
    this.start = BLOCK + this.inner.write(prefix, BLOCK, "utf8");
    if (this.start >= SCRATCH / 2) throw new RangeError("HMAC prefix too long");
    this.message = this.inner.subarray(this.start);
  }

  /** The MAC of `prefix ‖ message` (UTF-8): a 32-byte buffer, overwritten by the next call. */
  digest(message: string): Buffer {
    // Bytes of a UTF-8 string are at most 3 per UTF-16 unit: the scratch fits it when this holds.
    if (this.start + message.length * 3 <= SCRATCH) {
      return this.digestScratch(this.inner.write(message, this.start, "utf8"));
    }
    const input = Buffer.concat([this.inner.subarray(0, this.start), Buffer.from(message, "utf8")]);
    Bun.SHA256.hash(input, this.innerDigest);
    Bun.SHA256.hash(this.outer, this.out);
    return this.out;
  }

  /** The MAC of `prefix ‖ message[0, length)` (see `digest` and `message`). */
  digestScratch(length: number): Buffer {
    const end = this.start + length;
    if (!(length >= 0 && end <= SCRATCH)) throw new RangeError("HMAC message does not fit the scratch");
    let view = this.views[end];
    if (view === undefined) {
      view = this.inner.subarray(0, end);
      this.views[end] = view;
    }
    Bun.SHA256.hash(view, this.innerDigest);
    Bun.SHA256.hash(this.outer, this.out);
    return this.out;
  }
}
